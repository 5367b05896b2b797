"""GRPO, RAFT++ and Reinforce-Rej as their references define them: the optimiser kept over a run, losses aggregated
as TRL names them, log-probs at the sampling temperature, negatives in Reinforce-Rej, DAPO's dynamic sampling."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import quiet_trainer

from raft.modules.grpo import GRPOModule
from raft.modules.loss_aggregation import StepNormaliser, response_tokens
from raft.modules.raftpp import RaftPPModule
from raft.modules.reinforce_rej import ReinforceRejModule
from raft.modules.sft import SFTModule, pad_batch, response_logits
from raft.policies.causal_lm import CausalLMPolicy
from raft.rewards.base import Reward
from raft.sampling.sampler import Sampler
from raft.sampling.samples import Sample, read_samples
from raft.selection.selectors import KeepAll, LocalRanking

pytestmark = pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")


def _rows(tiny_lm_folder, rewards, groups, lengths=None):
    policy = CausalLMPolicy(str(tiny_lm_folder), chat_template=False, device="cpu")
    model, tokenizer = policy.load(None, trainable=True)
    lengths = lengths or [1] * len(rewards)
    samples = [
        Sample(g, f"prompt {g} " * (1 + g), " answer" * n + f" {i}", i, reward=r, finish_reason="stop")
        for i, (r, g, n) in enumerate(zip(rewards, groups, lengths))
    ]
    from raft.modules.sft import training_rows

    rows = training_rows(policy.token_rows(tokenizer, samples), 64)
    for row, s in zip(rows, samples):
        row["prompt_idx"], row["reward"] = s.prompt_idx, s.reward
    return model, tokenizer, rows


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None])


# ---------------------------------------------------------------- losses over an accumulated optimiser step


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_a_steps_gradient_does_not_depend_on_how_its_micro_batches_are_cut(tiny_lm_folder, loss_type):
    # responses of very different lengths: a mean of micro-batch means differs from the step's own mean
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0, 0.0, 1.0], [0, 0, 1, 1], lengths=[1, 9, 2, 6])
    module = GRPOModule(model, rows, tokenizer.pad_token_id, loss_type=loss_type, max_completion_length=32)
    module.on_train_start()
    model.eval()
    tokens = [response_tokens(r) for r in rows]

    def step_gradient(cuts: list[list[int]], accumulate: int) -> torch.Tensor:
        module.normaliser = StepNormaliser([torch.tensor(c) for c in cuts], tokens, accumulate)
        model.zero_grad()
        for i, cut in enumerate(cuts):
            loss = module.training_step(module.collate(torch.tensor(cut)), i)
            (loss / accumulate).backward()  # what Lightning does with each micro-batch's loss
        return _grads(model)

    whole = step_gradient([[0, 1, 2, 3]], 1)
    assert torch.allclose(step_gradient([[0, 1], [2, 3]], 2), whole, atol=1e-7, rtol=1e-4)
    assert torch.allclose(step_gradient([[1], [0, 2, 3]], 2), whole, atol=1e-7, rtol=1e-4)


def test_the_loss_types_follow_their_definitions(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0, 0.0, 1.0], [0, 0, 1, 1], lengths=[1, 9, 2, 6])
    per_token = torch.rand(4, 12)
    mask = torch.zeros(4, 12, dtype=torch.bool)
    for i, n in enumerate([2, 10, 3, 7]):
        mask[i, 12 - n :] = True
    cut = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    tokens = [2, 10, 3, 7]
    norm = StepNormaliser(cut, tokens, 2)
    a, b = (per_token[:2], mask[:2]), (per_token[2:], mask[2:])
    total = (per_token * mask).sum()
    seq_means = (per_token * mask).sum(-1) / mask.sum(-1)

    def step(loss_type):  # the two micro-batches' losses, divided by the accumulation as Lightning does
        return sum(norm.loss(x, m, i, loss_type, 16) / 2 for i, (x, m) in enumerate((a, b)))

    assert step("dapo").item() == pytest.approx((total / 22).item(), rel=1e-6)  # tokens of the whole step
    assert step("grpo").item() == pytest.approx(seq_means.mean().item(), rel=1e-6)
    assert step("dr_grpo").item() == pytest.approx((total / (4 * 16)).item(), rel=1e-6)
    local = [(x * m).sum() / m.sum() for x, m in (a, b)]  # bnpo: TRL's "local batch" token mean
    assert step("bnpo").item() == pytest.approx(((local[0] + local[1]) / 2).item(), rel=1e-6)
    with pytest.raises(ValueError, match="module.loss_type must be one of"):
        GRPOModule(model, rows, 0, loss_type="seq_mean")
    with pytest.raises(ValueError, match="module.max_completion_length"):
        GRPOModule(model, rows, 0, loss_type="dr_grpo")


# ---------------------------------------------------------------- pi_old at the sampling temperature


def test_old_log_probs_are_taken_at_the_sampling_temperature(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 1.0], [0, 1])
    module = RaftPPModule(model, rows, tokenizer.pad_token_id, temperature=0.5)
    module.on_train_start()
    batch = pad_batch(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        logits, labels = response_logits(model.eval(), batch)
    want = torch.log_softmax(logits[:, :-1].float() / 0.5, -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    for i, row in enumerate(rows):
        n = response_tokens(row)
        assert torch.allclose(module.old_logprobs[i][-n:], want[i, -n:], atol=1e-5)
    plain = RaftPPModule(model, rows, tokenizer.pad_token_id)  # temperature 1: another distribution
    plain.on_train_start()
    assert not torch.allclose(plain.old_logprobs[0], module.old_logprobs[0])


def test_raftpp_adds_the_kl_to_the_reference(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 1.0], [0, 1])
    reference, _ = CausalLMPolicy(str(tiny_lm_folder), device="cpu").load(None)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    module = RaftPPModule(model, rows, tokenizer.pad_token_id, kl_coef=0.1, reference=lambda: reference)
    module.on_train_start()
    module.training_step(module.collate(torch.arange(2)), 0)
    assert module.step_stats[0]["kl_penalty"] > 0


# ---------------------------------------------------------------- Reinforce-Rej


def test_reinforce_rej_pushes_down_the_wrong_response_and_up_the_right_one(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0], [0, 0])
    module = ReinforceRejModule(model, rows, tokenizer.pad_token_id)
    module.on_train_start()
    assert module.row_advantages.tolist() == [1.0, -1.0]  # the raw +-1 reward of a 0/1 verifier
    model.eval()
    model.zero_grad()
    module.training_step(module.collate(torch.arange(2)), 0).backward()
    before = [lp.sum().item() for lp in module.row_log_probs(model)]
    with torch.no_grad():
        for p in [p for p in model.parameters() if p.requires_grad]:
            p -= 1e-2 * p.grad
    after = [lp.sum().item() for lp in module.row_log_probs(model)]
    assert after[0] > before[0] and after[1] < before[1]
    raw = ReinforceRejModule(model, rows, tokenizer.pad_token_id, advantage="raw")
    raw.on_train_start()
    assert raw.row_advantages.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="module.advantage must be one of"):
        ReinforceRejModule(model, rows, 0, advantage="sign")


# ---------------------------------------------------------------- runs: optimiser state, truncation, dynamic sampling


class EvenPromptsMixed(Reward):
    """Rewards that differ between a prompt's responses only for even prompt numbers: odd prompts are uniform."""

    def score_batch(self, prompts, responses):
        return [float(len(r) % 2) if int(p.split()[-1]) % 2 == 0 else 1.0 for p, r in zip(prompts, responses)]


class NumberedPrompts:
    def __init__(self, n: int):
        self.train = [f"Tell me about topic number {i}" for i in range(n)]

    def prompts(self, split):
        return self.train if split == "train" else self.train[:2]

    def references(self, split):
        return None


def _task(run_dir, **overrides):
    from raft.tasks.raft import RaftTask

    args = dict(
        output_dir=str(run_dir),
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu", max_length=96),
        reward=EvenPromptsMixed(),
        sampler=Sampler(K=3, temperature=1.0, max_new_tokens=6, batch_size=12),
        selector=KeepAll(),
        module=functools.partial(GRPOModule, lr=1e-3, batch_size=4, scheduler="constant", optimizer_state="run"),
        trainer=quiet_trainer(max_epochs=1),
        data=NumberedPrompts(40),
        iterations=2,
        batch_size=4,
        track_kl=False,
        seed=0,
    )
    return RaftTask(**{**args, **overrides})


def test_the_optimiser_carries_over_the_stages_and_resumes_with_the_run(tmp_path):
    task = _task(tmp_path / "whole")
    task.run_iterations(task.data.prompts("train"))
    saved = [torch.load(tmp_path / "whole" / f"iter_{t:03d}" / "checkpoint" / "optimizer_state.pt") for t in (1,)]
    state = saved[0]["optimizers"][0]["state"]
    steps_per_stage = 3  # 4 prompts x K = 3 samples / minibatch 4
    assert {int(s["step"]) for s in state.values()} == {2 * steps_per_stage}  # Adam's step count went on
    assert saved[0]["schedulers"][0]["last_epoch"] == 2 * steps_per_stage

    # killed in stage 1's fit, then the same command again: the same optimiser state as the uninterrupted run
    killed = _task(tmp_path / "killed")
    real = killed.policy.finetune

    def die_in_stage_1(checkpoint, *args, **kwargs):
        if checkpoint is not None:
            raise KeyboardInterrupt("simulated kill")
        return real(checkpoint, *args, **kwargs)

    killed.policy.finetune = die_in_stage_1
    with pytest.raises(KeyboardInterrupt):
        killed.run_iterations(killed.data.prompts("train"))
    resumed = _task(tmp_path / "killed")
    resumed.run_iterations(resumed.data.prompts("train"))
    again = torch.load(tmp_path / "killed" / "iter_001" / "checkpoint" / "optimizer_state.pt")["optimizers"][0]
    for key, value in state.items():
        assert torch.equal(again["state"][key]["exp_avg"], value["exp_avg"])


def test_the_optimiser_carries_over_when_hydra_builds_the_module(tmp_path):
    """Hydra builds `_partial_: true` as its own partial class, which functools.partial does not flatten: the task's
    bindings (reference, optimiser state folders) must still see `optimizer_state: run` through the wrapping."""
    from hydra.utils import instantiate

    module = instantiate(
        {"_target_": "raft.modules.grpo.GRPOModule", "_partial_": True, "lr": 1e-3, "batch_size": 4}
        | {"scheduler": "constant", "optimizer_state": "run"}
    )
    task = _task(tmp_path, module=module)
    task.run_iterations(task.data.prompts("train"))
    saved = torch.load(tmp_path / "iter_001" / "checkpoint" / "optimizer_state.pt")["optimizers"][0]["state"]
    assert {int(s["step"]) for s in saved.values()} == {6}  # two stages of 3 optimiser steps, one Adam


def test_the_statistics_count_optimiser_steps_apart_from_micro_batches(tmp_path):
    """12 samples in minibatches of 4, accumulated 3 at a time: 3 micro-batches make one optimiser step."""
    task = _task(tmp_path, iterations=1, trainer=quiet_trainer(max_epochs=1, accumulate_grad_batches=3))
    task.run_iterations(task.data.prompts("train"))
    metrics = json.loads((tmp_path / "iter_000" / "metrics.json").read_text())
    assert (metrics["grpo_micro_batches"], metrics["grpo_optimizer_steps"]) == (3, 1)


def test_a_stage_scoped_optimiser_starts_afresh(tmp_path):
    module = functools.partial(GRPOModule, lr=1e-3, batch_size=4)
    task = _task(tmp_path, module=module)
    task.run_iterations(task.data.prompts("train"))
    assert not (tmp_path / "iter_001" / "checkpoint" / "optimizer_state.pt").exists()
    with pytest.raises(ValueError, match="module.scheduler=linear decays .* use module.scheduler=constant"):
        _task(tmp_path, module=functools.partial(GRPOModule, scheduler="linear", optimizer_state="run"))


def test_grpo_leaves_truncated_responses_out_when_asked(tmp_path):
    task = _task(
        tmp_path,
        iterations=1,
        sampler=Sampler(K=3, max_new_tokens=3, batch_size=12, truncated="drop", stop=["e", "a", "o"]),
    )
    task.run_iterations(task.data.prompts("train"))
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    selected = read_samples(tmp_path / "iter_000" / "selected.jsonl")
    assert any(s.truncated for s in scored)
    assert selected == [s for s in scored if not s.truncated]
    assert json.loads((tmp_path / "iter_000" / "filtered.json").read_text())["truncated"] == sum(
        s.truncated for s in scored
    )


def test_dynamic_sampling_tops_the_stage_up_with_mixed_prompts_and_resumes(tmp_path):
    task = _task(tmp_path, iterations=1, dynamic_sampling=True, dynamic_sampling_max_batches=3)
    history = task.run_iterations(task.data.prompts("train"))
    stage = tmp_path / "iter_000"
    scored = read_samples(stage / "scored.jsonl")
    pool = read_samples(stage / "dynamic.jsonl")
    first = {s.prompt_idx for s in scored}
    kept = {s.prompt_idx for s in pool}
    assert len(kept) == 4 and all(i % 2 == 0 for i in kept)  # b prompts, all of them with differing rewards
    assert kept - first  # some came from extra batches, none of which repeat the stage's own prompts
    extra = read_samples(stage / "dynamic_01.jsonl")
    assert not {s.prompt_idx for s in extra} & first
    counts = json.loads((stage / "dynamic.json").read_text())
    assert counts["mixed_prompts"] == 4 and counts["extra_samples"] == counts["batches"] * 4 * 3
    assert history[0]["dynamic_batches"] == counts["batches"] and history[0]["selected_n"] == 4 * 3
    # a kill after the extra batches: the rerun reads them back instead of drawing new ones
    before = (stage / "dynamic_01.jsonl").read_text()
    (stage / "dynamic.jsonl").unlink()
    (stage / "selected.jsonl").unlink()
    (stage / "metrics.json").unlink()
    _task(tmp_path, iterations=1, dynamic_sampling=True, dynamic_sampling_max_batches=3).run_iterations(
        task.data.prompts("train")
    )
    assert (stage / "dynamic_01.jsonl").read_text() == before
    assert {s.prompt_idx for s in read_samples(stage / "dynamic.jsonl")} == kept


def test_dynamic_sampling_works_for_raft_too(tmp_path):
    module = functools.partial(SFTModule, lr=1e-3, batch_size=4)
    task = _task(tmp_path, iterations=1, selector=LocalRanking(), module=module, dynamic_sampling=True)
    task.run_iterations(task.data.prompts("train"))
    selected = read_samples(tmp_path / "iter_000" / "selected.jsonl")
    assert len(selected) == 4 and all(s.prompt_idx % 2 == 0 for s in selected)  # best of K of 4 mixed prompts


# ---------------------------------------------------------------- what the monitor reads


def test_the_monitor_reads_what_the_reward_chose_before_a_filter_cleans_it(tmp_path):
    from test_loop import PROMPTS as LOOP_PROMPTS
    from test_loop import make_loop

    from raft.evaluation.monitor import METRICS
    from raft.selection.filters import RegexFilter

    strip_e = RegexFilter(pattern=r"\S*e\S*", action="strip")  # the reward counts 'e': the filter cuts those words
    history = make_loop(tmp_path, iterations=1, filters=[strip_e]).run_iterations(LOOP_PROMPTS)
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    chosen = [s.response for s in LocalRanking()(scored)]
    trained = [s.response for s in read_samples(tmp_path / "iter_000" / "selected.jsonl")]
    assert chosen != trained  # the filter did change the texts, and what the monitor would read of them
    assert (METRICS["length"](chosen), METRICS["distinct_2"](chosen)) != (
        METRICS["length"](trained),
        METRICS["distinct_2"](trained),
    )
    assert history[0]["selected_length"] == pytest.approx(METRICS["length"](chosen))
    assert history[0]["selected_distinct_2"] == pytest.approx(METRICS["distinct_2"](chosen))


def test_kl_ranking_with_a_teacher_scores_its_text_in_the_students_own_format(tmp_path):
    from test_loop import PROMPTS as LOOP_PROMPTS
    from test_loop import make_loop

    teacher = CausalLMPolicy(
        "tiny-llama", sample_dtype="float32", max_length=96, system_prompt="Answer as a teacher would."
    )
    loop = make_loop(tmp_path, iterations=1, selector=LocalRanking(beta=0.1), teacher=teacher)
    loop.run_iterations(LOOP_PROMPTS)
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    assert scored[0].prompt_ids != loop.policy.encode_prompt(loop.policy.load(None)[1], scored[0].prompt)
    own = loop.policy.log_probs(None, [s.as_text() for s in scored])  # the student's format and tokens
    assert [s.logp for s in scored] == pytest.approx(own, rel=1e-5)
    assert [s.ref_logp for s in scored] == pytest.approx(own, rel=1e-5)  # stage 0: current = initial policy


def test_the_kl_samples_are_drawn_from_the_plain_policy_whatever_the_sampler_adds(tmp_path):
    from raft.tasks.kl import kl_samples

    policy = CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu", max_length=96)
    batch = [(i, f"Tell me about topic number {i}") for i in range(3)]
    penalised = Sampler(
        K=2, max_new_tokens=6, generation_kwargs={"repetition_penalty": 50.0, "no_repeat_ngram_size": 1}
    )
    plain = Sampler(K=2, max_new_tokens=6)
    drawn = [kl_samples(policy, None, None, batch, s, tmp_path, seed=0, t=0) for s in (penalised, plain)]
    assert [s.response_ids for s in drawn[0]] == [s.response_ids for s in drawn[1]]


def test_a_grpo_steps_gradient_is_trls_on_the_same_batch(tiny_lm_folder, tmp_path):
    """raft's GRPO (loss_type dapo, one optimiser step of two micro-batches) and TRL's GRPOTrainer loss, given the
    same prompts, completions and rewards, give the same gradient: what differs between the two in a benchmark is
    what they sampled, not how a sample is weighed."""
    pytest.importorskip("trl")
    import copy

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rewards, groups = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0, 1, 1, 1, 1]
    model, tokenizer, rows = _rows(tiny_lm_folder, rewards, groups, lengths=[1, 9, 2, 6, 3, 5, 1, 4])
    theirs = copy.deepcopy(model)
    cuts = [[0, 1, 2, 3], [4, 5, 6, 7]]

    module = GRPOModule(model, rows, tokenizer.pad_token_id, loss_type="dapo", batch_size=4)
    module.on_train_start()
    module.normaliser = StepNormaliser([torch.tensor(c) for c in cuts], [response_tokens(r) for r in rows], 2)
    model.train()
    for i, cut in enumerate(cuts):
        (module.training_step(module.collate(torch.tensor(cut)), i) / 2).backward()  # Lightning's division

    config = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_generations=4,
        max_completion_length=16,
        beta=0.0,
        gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(
        model=theirs,
        reward_funcs=lambda prompts, completions, **_: [0.0] * len(prompts),
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["unused"] * 8}),
        processing_class=tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 2  # set by Trainer.train, which this test does not run
    grouped = torch.tensor(rewards).view(2, 4)  # TRL's advantages: (r - mean) / (std + 1e-4) within each group
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
    pad = tokenizer.pad_token_id
    prompts = [[i for i, label in zip(r["input_ids"], r["labels"]) if label == -100] for r in rows]
    completions = [r["input_ids"][len(p) :] for r, p in zip(rows, prompts)]
    tokens = sum(len(c) for c in completions)
    theirs.train()
    for cut in cuts:
        wide_p, wide_c = max(len(prompts[i]) for i in cut), max(len(completions[i]) for i in cut)
        inputs = {
            "prompt_ids": torch.tensor([[pad] * (wide_p - len(prompts[i])) + prompts[i] for i in cut]),
            "prompt_mask": torch.tensor([[0] * (wide_p - len(prompts[i])) + [1] * len(prompts[i]) for i in cut]),
            "completion_ids": torch.tensor([completions[i] + [pad] * (wide_c - len(completions[i])) for i in cut]),
            "completion_mask": torch.tensor(
                [[1] * len(completions[i]) + [0] * (wide_c - len(completions[i])) for i in cut]
            ),
            "advantages": advantages[cut],
            "num_items_in_batch": torch.tensor(float(tokens)),
        }
        trainer._compute_loss(theirs, inputs).backward()

    ours, trls = _grads(model), _grads(theirs)
    assert torch.nn.functional.cosine_similarity(ours, trls, dim=0) > 0.9999
    assert torch.allclose(ours.norm(), trls.norm(), rtol=1e-2)
