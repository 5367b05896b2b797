"""The whole RAFT loop on a tiny random-weight model: stage files, resume, KL ranking, teacher."""

import functools
import json

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer

from raft.evaluation.monitor import HackingMonitor
from raft.modules.sft import SFTModule
from raft.policies.causal_lm import CausalLMPolicy
from raft.rewards.base import Reward
from raft.sampling.sampler import Sampler
from raft.sampling.samples import read_samples
from raft.selection.selectors import GlobalRanking, LocalRanking
from raft.tasks.raft import RaftTask

PROMPTS = [f"Tell me about topic number {i}" for i in range(6)]


class LetterReward(Reward):
    """Counts the letter 'e': cheap, deterministic, and easy for selection to push up."""

    def score_batch(self, prompts, responses):
        return [r.count("e") for r in responses]


def make_loop(run_dir, **overrides):
    args = dict(
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", max_length=96),
        reward=LetterReward(),
        sampler=Sampler(K=3, temperature=1.0, max_new_tokens=6, batch_size=12),
        selector=LocalRanking(),
        module=functools.partial(SFTModule, lr=1e-3, batch_size=4),
        trainer=quiet_trainer(max_epochs=1),
        output_dir=run_dir,
        iterations=2,
        batch_size=4,
        monitor=HackingMonitor(),
        seed=0,
    )
    args.update(overrides)
    return RaftTask(**args)


def test_every_stage_writes_its_file_and_metrics(tmp_path):
    history = make_loop(tmp_path).run_iterations(PROMPTS)
    assert [h["iteration"] for h in history] == [0, 1]
    for t in range(2):
        stage = tmp_path / f"iter_{t:03d}"
        samples = read_samples(stage / "samples.jsonl")
        assert len(samples) == 4 * 3  # b prompts x K
        scored = read_samples(stage / "scored.jsonl")
        assert all(s.reward == s.response.count("e") for s in scored)
        selected = read_samples(stage / "selected.jsonl")
        assert len(selected) == 4  # one per prompt: acceptance ratio 1/K
        metrics = json.loads((stage / "metrics.json").read_text())
        assert metrics["best_of_k_reward"] >= metrics["policy_reward"]
        assert {"selected_distinct_2", "selected_length", "kl"} <= metrics.keys()
        stages = [metrics[f"peak_rss_mb_{name}"] for name in ("sampling", "scoring", "training", "kl")]
        assert max(stages) <= metrics["peak_rss_mb_step"] <= metrics["peak_rss_mb"]  # the step's own, in the task's
        assert metrics["seconds_step"] <= metrics["wall_time_s"] + 0.05  # wall time is rounded to 0.1 s
    assert not (tmp_path / "iter_000" / "checkpoint").exists()  # pruned: only the newest is kept
    assert (tmp_path / "iter_001" / "checkpoint" / "config.json").exists()
    # the KL of the policy each stage produced, on fresh samples of it: b prompts, one response each
    for t in range(2):
        kl = read_samples(tmp_path / f"iter_{t:03d}" / "kl_samples.jsonl")
        assert len(kl) == 4 and history[t]["kl"] == pytest.approx(sum(s.logp - s.ref_logp for s in kl) / 4)


def kill_in_iteration_1(loop):
    """Run the loop and kill it as iteration 1's fine-tuning starts (its samples, scores and selection exist)."""
    real_finetune = loop.policy.finetune

    def finetune_then_die(checkpoint, *args, **kwargs):
        if checkpoint is not None:
            raise KeyboardInterrupt("simulated kill")
        return real_finetune(checkpoint, *args, **kwargs)

    loop.policy.finetune = finetune_then_die
    with pytest.raises(KeyboardInterrupt):
        loop.run_iterations(PROMPTS)


def test_killed_run_resumes_at_the_first_unfinished_stage(tmp_path):
    kill_in_iteration_1(make_loop(tmp_path))
    stage = tmp_path / "iter_001"
    assert not (stage / "checkpoint").exists() and not (stage / "metrics.json").exists()
    assert not list(stage.glob(".*partial"))  # the half-written checkpoint was removed
    written = {p.name: p.stat().st_mtime_ns for p in stage.glob("*.jsonl")}
    assert set(written) == {"samples.jsonl", "scored.jsonl", "selected.jsonl"}
    first_iteration = (tmp_path / "iter_000" / "metrics.json").stat().st_mtime_ns

    # The same run started again: no stage sampling, nothing finished is redone, the run completes. The one
    # draw is the KL estimate's of the policy the resumed fine-tuning produced (one response per prompt).
    calls = []
    again = make_loop(tmp_path)
    real_sample = again.policy.sample
    again.policy.sample = lambda ckpt, *a, **k: calls.append((ckpt, a[1].K)) or real_sample(ckpt, *a, **k)
    history = again.run_iterations(PROMPTS)
    assert calls == [(stage / "checkpoint", 1)]
    assert {name: (stage / name).stat().st_mtime_ns for name in written} == written
    assert (tmp_path / "iter_000" / "metrics.json").stat().st_mtime_ns == first_iteration
    assert (stage / "checkpoint" / "config.json").exists() and [h["iteration"] for h in history] == [0, 1]


def test_kl_penalised_ranking_gets_log_probs_on_every_sample(tmp_path):
    make_loop(tmp_path, selector=LocalRanking(beta=0.1), iterations=1).run_iterations(PROMPTS)
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    assert all(s.logp is not None and s.ref_logp is not None and s.logp < 0 for s in scored)


def test_global_ranking_and_a_teacher_policy(tmp_path):
    teacher = CausalLMPolicy("tiny-llama", sample_dtype="float32", max_length=96)
    loop = make_loop(tmp_path, selector=GlobalRanking(), teacher=teacher, iterations=1, track_kl=False)
    loop.run_iterations(PROMPTS)
    selected = read_samples(tmp_path / "iter_000" / "selected.jsonl")
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    assert len(selected) == 4  # 1/K of 12
    assert min(s.reward for s in selected) >= sorted((s.reward for s in scored), reverse=True)[3]


def test_lora_adapters_stack_on_the_init_checkpoint(tmp_path):
    """With LoRA and an SFT-style starting checkpoint, later stages load the adapter onto that checkpoint."""
    from raft.policies.models import build_tiny_causal_lm

    start = build_tiny_causal_lm(tmp_path / "sft", seed=5)
    policy = CausalLMPolicy(
        "tiny-llama", sample_dtype="float32", max_length=96, lora={"r": 4, "alpha": 8, "dropout": 0.0}
    )
    make_loop(tmp_path / "run", policy=policy, init_checkpoint=start).run_iterations(PROMPTS)
    adapter = tmp_path / "run" / "iter_001" / "checkpoint"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(start)
    model, _ = policy.load(adapter)
    sft_model, _ = policy.load(start)
    original, _ = policy.load(None)
    embedding = model.get_input_embeddings().weight  # LoRA leaves embeddings alone: they show the base
    assert torch.equal(embedding, sft_model.get_input_embeddings().weight)
    assert not torch.equal(embedding, original.get_input_embeddings().weight)
    assert not any(n.startswith("base_model") for n, _ in model.named_parameters())  # merged for sampling


def test_sigterm_during_fine_tuning_saves_no_checkpoint(tmp_path):
    """Lightning handles SIGTERM itself; the stage must still count as unfinished."""
    import os
    import signal

    class SendSigterm(pl.Callback):
        def on_train_batch_start(self, trainer, *args):
            os.kill(os.getpid(), signal.SIGTERM)

    trainer = quiet_trainer(max_epochs=2, callbacks=[SendSigterm()])
    loop = make_loop(tmp_path, trainer=trainer, iterations=1)
    with pytest.raises(BaseException) as caught:
        loop.run_iterations(PROMPTS)
    assert "SIGTERM" in type(caught.value).__name__ + str(caught.value)
    assert not (tmp_path / "iter_000" / "checkpoint").exists()
    assert not list((tmp_path / "iter_000").glob(".*partial"))
    assert (tmp_path / "iter_000" / "selected.jsonl").exists()  # the stages before it are kept


def test_a_teacher_can_replay_another_runs_samples(tmp_path):
    from raft.policies.recorded import RecordedSamples

    make_loop(tmp_path / "teacher", track_kl=False).run_iterations(PROMPTS)
    make_loop(tmp_path / "student", track_kl=False, teacher=RecordedSamples(str(tmp_path / "teacher"))).run_iterations(
        PROMPTS
    )
    for t in (0, 1):  # stage by stage, the student saw exactly what the teacher's run drew
        teacher = read_samples(tmp_path / "teacher" / f"iter_{t:03d}" / "samples.jsonl")
        student = read_samples(tmp_path / "student" / f"iter_{t:03d}" / "samples.jsonl")
        assert [(s.prompt_idx, s.response) for s in student] == [(s.prompt_idx, s.response) for s in teacher]
    other = make_loop(tmp_path / "other", track_kl=False, seed=1, teacher=RecordedSamples(str(tmp_path / "teacher")))
    with pytest.raises(ValueError, match="same data, seed and task.batch_size"):
        other.run_iterations(PROMPTS)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    from safetensors.torch import load_file

    make_loop(tmp_path / "straight").run_iterations(PROMPTS)
    kill_in_iteration_1(make_loop(tmp_path / "resumed"))
    torch.manual_seed(12345)  # a new process: whatever state the global generators are in
    make_loop(tmp_path / "resumed").run_iterations(PROMPTS)
    straight = load_file(tmp_path / "straight" / "iter_001" / "checkpoint" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "iter_001" / "checkpoint" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
