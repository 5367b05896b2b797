"""Runs that never train on garbage and never trust a broken file (issue: guarded stages, verified resume)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os

import pytest
import torch
from conftest import quiet_trainer

from raft.cli.resolvers import run_dirname, run_name
from raft.infra.atomic import atomic_dir, is_complete
from raft.infra.locks import FolderBusy, file_lock
from raft.rewards.base import Reward
from raft.trackers.tracking import Tracker, read_metrics_csv


class Scripted(Reward):
    def __init__(self, scores):
        self.scores = scores

    def score_batch(self, prompts, responses):
        return self.scores


@pytest.mark.parametrize(
    "scores, message",
    [
        ([1.0, math.nan], "Scripted returned nan for response 1"),
        ([1.0, math.inf], "Scripted returned inf for response 1"),
        ([1.0], "Scripted returned 1 scores for 2 responses"),
        ([1.0, "good"], "Scripted returned 'good' for response 1, not a number"),
        (None, "Scripted returned NoneType"),
    ],
)
def test_a_reward_must_give_one_finite_float_per_response(scores, message):
    with pytest.raises(ValueError, match=message):
        Scripted(scores)(["p", "q"], ["a", "b"])


def test_a_nan_reward_writes_no_stage_file(tmp_path):
    from test_loop import PROMPTS, make_loop

    loop = make_loop(tmp_path, reward=Scripted([math.nan] * 12), iterations=1)
    with pytest.raises(ValueError, match="Scripted returned nan"):
        loop.run_iterations(PROMPTS)
    assert (tmp_path / "iter_000" / "samples.jsonl").exists()
    assert not (tmp_path / "iter_000" / "scored.jsonl").exists()


def test_an_empty_selection_stops_before_fine_tuning(tmp_path):
    from test_loop import PROMPTS, make_loop

    from raft.selection.filters import RegexFilter

    loop = make_loop(tmp_path, iterations=1, filters=[RegexFilter(".*", name="everything")])
    with pytest.raises(
        ValueError, match=r"nothing left to fine-tune on \(12 samples, 4 selected, removed: \{'everything': 4"
    ):
        loop.run_iterations(PROMPTS)
    assert not (tmp_path / "iter_000" / "selected.jsonl").exists()
    assert not (tmp_path / "iter_000" / "checkpoint").exists()


def test_a_non_finite_loss_saves_no_checkpoint(tmp_path):
    from raft.modules.sft import SFTModule
    from raft.policies.causal_lm import CausalLMPolicy
    from raft.sampling.samples import Sample
    from raft.trainer.fit import NonFiniteLoss

    policy = CausalLMPolicy("tiny-llama", device="cpu")
    real_load = policy.load

    def poisoned(*args, **kwargs):  # weights gone bad: every logit NaN
        model, tokenizer = real_load(*args, **kwargs)
        with torch.no_grad():
            model.get_output_embeddings().weight.fill_(math.nan)
        return model, tokenizer

    policy.load = poisoned
    samples = [Sample(0, "hi", " there", prompt_ids=[5, 6], response_ids=[7, 8], finish_reason="stop")]
    with pytest.raises(NonFiniteLoss, match="SFTModule: training loss is nan at step 0"):
        with atomic_dir(tmp_path / "checkpoint") as tmp:
            policy.finetune(None, samples, tmp, SFTModule, quiet_trainer(max_epochs=1))
    assert not (tmp_path / "checkpoint").exists()


def test_a_truncated_checkpoint_fails_its_manifest_and_the_stage_is_redone(tmp_path):
    from test_loop import PROMPTS, make_loop

    make_loop(tmp_path, iterations=1).run_iterations(PROMPTS)
    checkpoint = tmp_path / "iter_000" / "checkpoint"
    assert is_complete(checkpoint)
    weights = checkpoint / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # a disk that filled up, a copy that broke off
    assert not is_complete(checkpoint)
    (tmp_path / "iter_000" / "metrics.json").unlink()  # killed before the stage was marked done
    make_loop(tmp_path, iterations=1).run_iterations(PROMPTS)
    assert is_complete(checkpoint) and weights.read_bytes() == good  # redone, to the same weights


def test_a_damaged_earlier_checkpoint_is_redone_or_named(tmp_path):
    from test_loop import PROMPTS, make_loop

    make_loop(tmp_path, iterations=2, keep_checkpoints=0).run_iterations(PROMPTS)
    (tmp_path / "iter_001" / "metrics.json").unlink()
    (tmp_path / "iter_001" / "checkpoint" / "model.safetensors").write_bytes(b"broken")
    (tmp_path / "iter_000" / "checkpoint" / "config.json").write_text("{}")  # iteration 0's weights: damaged too
    history = make_loop(tmp_path, iterations=2, keep_checkpoints=0).run_iterations(PROMPTS)
    assert [h["iteration"] for h in history] == [0, 1] and is_complete(tmp_path / "iter_000" / "checkpoint")
    # with iteration 0's checkpoint pruned, a damaged iteration 1 cannot be redone: one line says so
    make_loop(tmp_path / "pruned", iterations=2).run_iterations(PROMPTS)
    (tmp_path / "pruned" / "iter_001" / "checkpoint" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot be redone"):
        make_loop(tmp_path / "pruned", iterations=3).run_iterations(PROMPTS)


def test_metrics_csv_is_rebuilt_from_the_iterations_metrics_json(tmp_path):
    for t in range(3):  # three finished iterations, the CSV lost the last row (killed before it was logged)
        (tmp_path / f"iter_{t:03d}").mkdir()
        (tmp_path / f"iter_{t:03d}" / "metrics.json").write_text(json.dumps({"iteration": t, "policy_reward": t / 10}))
    (tmp_path / "metrics.csv").write_text("iteration,policy_reward\n0,0.0\n1,0.1\n")
    Tracker(tmp_path)
    assert [r["iteration"] for r in read_metrics_csv(tmp_path / "metrics.csv")] == ["0", "1", "2"]


def _hold(path, ready, release):
    with file_lock(path):
        ready.set()
        release.wait(10)


def test_a_file_lock_is_exclusive_and_dies_with_its_process(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path / "x.lock", ready, release))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(FolderBusy):
        with file_lock(tmp_path / "x.lock", wait=False):
            pass
    os.kill(holder.pid, 9)  # a killed holder leaves no stale lock
    holder.join()
    with file_lock(tmp_path / "x.lock", wait=False):
        pass


def _build_tiny(cache):
    os.environ["RAFT_CACHE"] = str(cache)
    from raft.policies.models.tiny import tiny_folder

    tiny_folder()


def test_parallel_jobs_build_a_shared_cache_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    jobs = [ctx.Process(target=_build_tiny, args=(tmp_path,)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert is_complete(tmp_path / "tiny-llama")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_run_folder_names_never_collide_or_leave_outputs():
    assert run_dirname("model.system_prompt=a b") != run_dirname("model.system_prompt=a_b")
    assert run_dirname("sampler.K=8,seed=0") == "sampler.K=8,seed=0"  # plain overrides stay readable
    for bad in ("../x", "a/b", "..", "/abs"):
        with pytest.raises(ValueError, match="must be one folder name"):
            run_name(bad)
    assert run_name("paper_mini_table4_k") == "paper_mini_table4_k"


def test_a_run_folder_keeps_one_configuration(tmp_path):
    from omegaconf import OmegaConf

    from raft.tasks.run_folder import claim

    base = {"seed": 0, "seeds": 3, "sampler": {"K": 8}, "task": {"iterations": 2}, "evaluator": {"every": 1}}
    claim(tmp_path, OmegaConf.create(base))
    longer = {**base, "seeds": 5, "task": {"iterations": 4}, "evaluator": {"every": 2}}
    claim(tmp_path, OmegaConf.create(longer))  # more seeds, more iterations, another cadence: the same run
    with pytest.raises(ValueError, match=r"another configuration \(sampler.K differ\).*allow_changed_config=true"):
        claim(tmp_path, OmegaConf.create({**base, "sampler": {"K": 16}}))
    claim(tmp_path, OmegaConf.create({**base, "sampler": {"K": 16}}), allow_changed=True)


def _rewrite(path, text):
    """Rewrite a file in place, keeping its modification time (as a checkout or `cp -p` may)."""
    mtime = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(mtime, mtime))


def test_a_run_folder_stops_when_the_rewards_or_datas_code_or_files_changed(tmp_path, monkeypatch):
    """The same settings, other code or data: a resumed run would score or sample its later stages differently
    from its earlier ones. The reward's module and the data's file are digested; a change stops the resume."""
    from omegaconf import OmegaConf

    from raft.tasks.run_folder import claim

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "user_reward_for_claim.py"
    module.write_text("def score(x):\n    return +x\n")
    data_file = tmp_path / "prompts.txt"
    data_file.write_text("write a poem\n")
    cfg = OmegaConf.create(
        {
            "seed": 0,
            "reward": {"_target_": "user_reward_for_claim.score"},
            "data": {"_target_": "raft.data.sources.EverydayPrompts", "path": str(data_file)},
            "task": {"reward": "${reward}", "data": "${data}"},
        }
    )
    run = tmp_path / "run"
    claim(run, cfg)
    claim(run, cfg)  # nothing changed: the same run

    _rewrite(module, "def score(x):\n    return -x\n")  # the sign flipped: same size, same time
    with pytest.raises(ValueError, match=r"\(reward._target_@code differ; @code: .*allow_changed_config=true"):
        claim(run, cfg)
    claim(run, cfg, allow_changed=True)  # the escape: the new code is recorded from here on
    claim(run, cfg)

    _rewrite(data_file, "write a hymn\n")
    with pytest.raises(ValueError, match=r"\(data.path@sha256 differ"):
        claim(run, cfg)
    recorded = json.loads((run / "config_fingerprint.json").read_text())
    assert {"reward._target_@code", "data._target_@code", "data.path@sha256"} <= recorded.keys()
    assert not any(k.startswith("task.") and k.endswith(("@code", "@sha256")) for k in recorded)  # digested once


def test_a_fingerprint_without_digests_and_the_runs_own_files_do_not_stop_a_resume(tmp_path):
    """A run folder from before raft kept digests resumes (and records them); a file inside the run folder (the
    reward model a pipeline trains into it) is the run's own output, not an input that changed."""
    from omegaconf import OmegaConf

    from raft.tasks.run_folder import FINGERPRINT, claim

    run = tmp_path / "run"
    trained = run / "reward_model"
    cfg = OmegaConf.create(
        {"seed": 0, "reward": {"_target_": "raft.rewards.reward_model.TrainedRewardModel", "path": str(trained)}}
    )
    claim(run, cfg)
    trained.mkdir()
    (trained / "config.json").write_text("{}")  # the pipeline's reward-model stage wrote it
    claim(run, cfg)
    fingerprint = json.loads((run / FINGERPRINT).read_text())
    assert "reward._target_@code" in fingerprint and "reward.path@sha256" not in fingerprint
    older = {k: v for k, v in fingerprint.items() if not k.endswith(("@code", "@sha256"))}
    (run / FINGERPRINT).write_text(json.dumps(older))  # as raft wrote it before
    claim(run, cfg)
    assert "reward._target_@code" in json.loads((run / FINGERPRINT).read_text())


def _claim_and_wait(path, ready, release):
    from omegaconf import OmegaConf

    from raft.tasks.run_folder import claim

    claim(path, OmegaConf.create({"seed": 0}))
    ready.set()
    release.wait(10)


def test_a_second_process_in_the_same_folder_stops_at_once(tmp_path):
    from omegaconf import OmegaConf

    from raft.tasks.run_folder import claim

    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    first = ctx.Process(target=_claim_and_wait, args=(tmp_path, ready, release))
    first.start()
    assert ready.wait(10)
    with pytest.raises(ValueError, match="another raft process is working in"):
        claim(tmp_path, OmegaConf.create({"seed": 0}))
    release.set()
    first.join()


@pytest.mark.parametrize("alias", ["tiny-llama", "smollm2-135m-instruct"])
def test_building_a_model_cache_leaves_the_runs_random_draws_alone(tmp_path, monkeypatch, alias):
    """The first run on a machine builds the cache (SmolLM2: a random init before the GGUF weights; tiny-llama:
    `manual_seed` of its own) after the evaluator has seeded torch: its draws must be those of every later run."""
    from raft.policies.models.loading import resolve_model_path

    monkeypatch.setenv("RAFT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    resolve_model_path(alias)  # builds the folder: nothing in tmp_path yet
    assert is_complete(tmp_path / alias)
    assert torch.equal(torch.rand(4), expected)
