"""RAFT++, GRPO and the selections of Xiong et al. 2025 on the tiny random model: losses, advantages, runs."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from conftest import quiet_trainer

from raft.modules.clipped_ratio import k3
from raft.modules.grpo import GRPOModule
from raft.modules.raftpp import RaftPPModule
from raft.modules.rl.advantages import group_advantages
from raft.modules.sft import SFTModule, pad_batch, training_rows
from raft.policies.causal_lm import CausalLMPolicy
from raft.sampling.samples import Sample, read_samples

pytestmark = pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")


# ---------------------------------------------------------------- advantages and the KL estimator


def test_group_advantages_normalise_within_each_prompt():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 5.0, 2.0, 3.0])
    groups = [7, 7, 7, 7, 2, 2, 9, 4, 4]  # prompt 2's rewards are equal; prompt 9 has one response
    got = group_advantages(rewards, groups)
    a = 0.5 / (torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item() + 1e-4)  # Bessel-corrected std, as TRL's
    assert got[:4].tolist() == pytest.approx([a, -a, -a, a], rel=1e-5)
    assert got[4:7].tolist() == [0.0, 0.0, 0.0]  # no variance, or nothing to compare with: no signal
    assert got[7:].tolist() == pytest.approx([-0.5 / (0.5**0.5 + 1e-4), 0.5 / (0.5**0.5 + 1e-4)], rel=1e-5)
    centred = group_advantages(rewards, groups, scale_by_std=False)
    assert centred.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, -0.5, 0.5])


def test_k3_is_zero_at_the_reference_and_positive_elsewhere():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert k3(logp, logp).tolist() == [0.0, 0.0, 0.0]
    ref = torch.tensor([-1.5, -1.0, -0.5])
    d = ref - logp
    assert k3(logp, ref).tolist() == pytest.approx((torch.exp(d) - d - 1).tolist())
    assert (k3(logp, ref)[:2] > 0).all()


def test_minibatches_cover_every_row_once_per_pass_and_reshuffle():
    from raft.modules.clipped_ratio import Minibatches

    torch.manual_seed(0)
    batches = Minibatches(5, 2, passes=2)
    sizes = [len(b) for b in batches.batches]
    assert sizes == [2, 2, 1, 2, 2, 1]  # each pass cut on its own
    for first in (0, 3):
        assert sorted(torch.cat(batches.batches[first : first + 3]).tolist()) == [0, 1, 2, 3, 4]
    before = [b.tolist() for b in batches.batches]
    batches.shuffle()  # a later trainer epoch: fresh permutations
    assert [b.tolist() for b in batches.batches] != before and len(batches) == 6


# ---------------------------------------------------------------- the modules on the tiny model


def _rows(tiny_lm_folder, rewards, groups):
    policy = CausalLMPolicy(str(tiny_lm_folder), chat_template=False, device="cpu")
    model, tokenizer = policy.load(None, trainable=True)
    samples = [
        Sample(g, f"prompt {g} " * (1 + g), f" answer {i}", i, reward=r, finish_reason="stop")
        for i, (r, g) in enumerate(zip(rewards, groups))
    ]
    rows = training_rows(policy.token_rows(tokenizer, samples), 64)
    for row, s in zip(rows, samples):
        row["prompt_idx"], row["reward"] = s.prompt_idx, s.reward
    return model, tokenizer, rows


def _fit_one_step(module):
    """The fit's start (advantages, old log-probs), then the loss and gradient of one step on all rows."""
    module.on_train_start()
    module.model.eval()  # no dropout: compare exact gradients
    batch = module.collate(torch.arange(len(module.rows)))
    module.model.zero_grad()
    loss = module.training_step(batch, 0)
    loss.backward()
    return loss, [p.grad.clone() for p in module.model.parameters() if p.requires_grad]


def test_raftpp_at_ratio_one_gives_the_sft_gradient(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 1.0, 1.0], [0, 1, 2])
    raftpp = RaftPPModule(model, rows, tokenizer.pad_token_id, batch_size=8)
    loss, grads = _fit_one_step(raftpp)
    assert loss.item() == pytest.approx(-1.0, abs=1e-5)  # -mean ratio, every ratio 1 before an update
    sft = SFTModule(model, rows, tokenizer.pad_token_id, batch_size=8)
    model.zero_grad()
    sft.training_step(pad_batch(rows, tokenizer.pad_token_id), 0).backward()
    for got, want in zip(grads, [p.grad for p in model.parameters() if p.requires_grad]):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)
    assert raftpp.step_stats[0]["clip_fraction"] == 0.0 and raftpp.step_stats[0]["approx_kl"] == pytest.approx(
        0, abs=1e-6
    )


def test_raftpp_stops_pulling_a_token_whose_ratio_is_past_the_clip(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 1.0], [0, 1])
    raftpp = RaftPPModule(model, rows, tokenizer.pad_token_id, batch_size=8, clip_range=0.2)
    _fit_one_step(raftpp)
    # the sampling policy gave row 0's tokens much less probability than now (ratio e^3 > 1.2), row 1's more
    raftpp.old_logprobs[0] = raftpp.old_logprobs[0] - 3.0
    raftpp.old_logprobs[1] = raftpp.old_logprobs[1] + 3.0
    batch = raftpp.collate(torch.arange(2))
    model.zero_grad()
    raftpp.training_step(batch, 0).backward()
    clipped = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    # only row 1 (ratio e^-3, below the clip but on the side where min() keeps the ratio) still pulls
    only_row_1 = RaftPPModule(model, rows[1:], tokenizer.pad_token_id, batch_size=8)
    _fit_one_step(only_row_1)
    only_row_1.old_logprobs[0] = only_row_1.old_logprobs[0] + 3.0
    model.zero_grad()
    only_row_1.training_step(only_row_1.collate(torch.arange(1)), 0).backward()
    n_tokens = [sum(label != -100 for label in r["labels"]) for r in rows]
    scale = n_tokens[1] / sum(n_tokens)  # token-level mean over both rows vs over row 1 alone
    for got, want in zip(clipped, [p.grad for p in model.parameters() if p.requires_grad]):
        assert torch.allclose(got, scale * want, atol=1e-7, rtol=1e-4)
    assert raftpp.step_stats[-1]["clip_fraction"] == pytest.approx(n_tokens[0] / sum(n_tokens))


def test_grpo_gradient_raises_the_better_response_and_lowers_the_worse(tiny_lm_folder):
    # one prompt, two responses: reward 1 and 0. One SGD step along the GRPO gradient must raise the
    # log-probability of the rewarded response and lower the other's.
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0], [0, 0])
    grpo = GRPOModule(model, rows, tokenizer.pad_token_id, batch_size=8)
    _, grads = _fit_one_step(grpo)
    assert grpo.row_advantages.tolist() == pytest.approx([0.5 / (0.5**0.5 + 1e-4), -0.5 / (0.5**0.5 + 1e-4)])
    before = [lp.sum().item() for lp in grpo.row_log_probs(model)]
    with torch.no_grad():
        for p, g in zip([p for p in model.parameters() if p.requires_grad], grads):
            p -= 1e-2 * g
    after = [lp.sum().item() for lp in grpo.row_log_probs(model)]
    assert after[0] > before[0] and after[1] < before[1]
    stats = grpo.training_stats()
    assert stats["grpo_zero_variance_groups"] == 0.0 and stats["grpo_mean_abs_advantage"] > 0.7


def test_grpo_kl_term_uses_the_reference_and_is_zero_when_it_is_the_start(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0, 0.5], [0, 0, 0])
    reference, _ = CausalLMPolicy(str(tiny_lm_folder), device="cpu").load(None)
    grpo = GRPOModule(model, rows, tokenizer.pad_token_id, batch_size=8, kl_coef=0.5, reference=lambda: reference)
    _fit_one_step(grpo)
    assert grpo.step_stats[0]["kl_penalty"] == pytest.approx(0.0, abs=1e-6)  # the start is the reference
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.zero_grad()
    grpo.training_step(grpo.collate(torch.arange(3)), 0)
    assert grpo.step_stats[-1]["kl_penalty"] > 0


def test_grpo_and_raftpp_validate_their_arguments(tiny_lm_folder):
    model, tokenizer, rows = _rows(tiny_lm_folder, [1.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match="module.clip_range must be in"):
        RaftPPModule(model, rows, 0, clip_range=1.5)
    with pytest.raises(ValueError, match="module.ppo_epochs must be >= 1"):
        GRPOModule(model, rows, 0, ppo_epochs=0)
    with pytest.raises(ValueError, match="module.kl_coef > 0 needs a reference"):
        GRPOModule(model, rows, 0, kl_coef=0.1)
    with pytest.raises(ValueError, match="module.kl_coef must be >= 0"):
        GRPOModule(model, rows, 0, kl_coef=-1.0)
    with pytest.raises(ValueError, match="needs each row's reward"):
        GRPOModule(model, [{**rows[0], "reward": None}], 0)


# ---------------------------------------------------------------- task=grpo and task=raft with RAFT++


def _grpo_task(run_dir, iterations, **overrides):
    from raft.data.sources import EverydayPrompts
    from raft.evaluation.evaluator import Evaluator
    from raft.rewards.pattern import PatternCount
    from raft.sampling.sampler import Sampler
    from raft.selection.selectors import KeepAll
    from raft.tasks.raft import RaftTask

    reward = PatternCount(pattern="e")
    args = dict(
        output_dir=str(run_dir),
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu", max_length=96),
        reward=reward,
        sampler=Sampler(K=3, temperature=1.0, max_new_tokens=6, batch_size=12),
        selector=KeepAll(),
        module=functools.partial(GRPOModule, lr=1e-3, batch_size=4, ppo_epochs=2, kl_coef=0.1),
        trainer=quiet_trainer(max_epochs=1),
        data=EverydayPrompts(n_test=2, limit=8),
        evaluator=Evaluator(reward, Sampler(K=1, max_new_tokens=6, batch_size=4), every=2),
        iterations=iterations,
        batch_size=4,
        seed=0,
    )
    return RaftTask(**{**args, **overrides})


def test_grpo_task_writes_a_raft_shaped_run_and_resumes_after_a_kill(tmp_path):
    task = _grpo_task(tmp_path, iterations=2)
    real_finetune = task.policy.finetune

    def finetune_then_die(checkpoint, *args, **kwargs):
        if checkpoint is not None:  # iteration 1's update: its samples and scores are on disk
            raise KeyboardInterrupt("simulated kill")
        return real_finetune(checkpoint, *args, **kwargs)

    task.policy.finetune = finetune_then_die
    with pytest.raises(KeyboardInterrupt):
        task.run()
    stage = tmp_path / "iter_001"
    assert (stage / "scored.jsonl").exists() and not (stage / "checkpoint").exists()
    samples_before = (stage / "samples.jsonl").read_text()
    first = json.loads((tmp_path / "iter_000" / "metrics.json").read_text())

    result = _grpo_task(tmp_path, iterations=2).run()  # the same command again: resumes at iteration 1's update
    assert (stage / "samples.jsonl").read_text() == samples_before  # not sampled again
    assert json.loads((tmp_path / "iter_000" / "metrics.json").read_text()) == first
    scored = read_samples(stage / "scored.jsonl")
    assert len(scored) == 4 * 3 and all(s.response_ids and s.prompt_ids for s in scored)
    second = result["iterations"][1]
    assert {"policy_reward", "best_of_k_reward", "kl", "eval_reward", "peak_rss_mb", "seconds_training"} <= set(second)
    assert second["selected_n"] == 12  # GRPO trains on every sample
    assert {"grpo_clip_fraction", "grpo_approx_kl", "grpo_kl_penalty", "grpo_mean_abs_advantage"} <= set(first)
    assert first["grpo_micro_batches"] == first["grpo_optimizer_steps"] == 2 * 3  # 2 epochs x 12 samples / 4
    assert 0.0 <= first["grpo_zero_variance_groups"] <= 1.0
    assert (tmp_path / "iter_001" / "checkpoint" / "config.json").exists()
    assert not (tmp_path / "iter_000" / "checkpoint").exists()  # keep_checkpoints = 1
    assert set(json.loads((tmp_path / "evaluation.json").read_text())) == {"before", "after"}


def test_grpo_refuses_a_selector_that_drops_samples_and_single_samples(tmp_path):
    from raft.sampling.sampler import Sampler
    from raft.selection.selectors import LocalRanking

    with pytest.raises(ValueError, match="weighs every sample by its advantage .* use selector=all"):
        _grpo_task(tmp_path, 1, selector=LocalRanking())
    with pytest.raises(ValueError, match="sampler.K must be >= 2"):
        _grpo_task(tmp_path, 1, sampler=Sampler(K=1, max_new_tokens=6))


def test_raftpp_with_threshold_and_reinforce_rej_in_task_raft(tmp_path):
    from test_loop import PROMPTS as LOOP_PROMPTS
    from test_loop import make_loop

    from raft.selection.selectors import ThresholdSelection

    loop = make_loop(
        tmp_path,
        iterations=1,
        selector=ThresholdSelection(threshold=1.0, mixed_prompts_only=True),
        module=functools.partial(RaftPPModule, lr=1e-3, batch_size=4),
    )
    history = loop.run_iterations(LOOP_PROMPTS)
    scored = read_samples(tmp_path / "iter_000" / "scored.jsonl")
    selected = read_samples(tmp_path / "iter_000" / "selected.jsonl")
    by_prompt: dict[int, set] = {}
    for s in scored:
        by_prompt.setdefault(s.prompt_idx, set()).add(s.reward)
    mixed = {p for p, rs in by_prompt.items() if len(rs) > 1}
    assert [(s.prompt_idx, s.sample_idx) for s in selected] == [
        (s.prompt_idx, s.sample_idx) for s in scored if s.prompt_idx in mixed and s.reward >= 1.0
    ]
    filtered = json.loads((tmp_path / "iter_000" / "filtered.json").read_text())
    assert filtered["uniform_groups"] == len(by_prompt) - len(mixed)
    assert history[0]["filtered_uniform_groups"] == filtered["uniform_groups"]
    assert selected and history[0]["raftpp_optimizer_steps"] == -(-len(selected) // 4)  # ceil(kept / 4): one epoch
    assert history[0]["raftpp_clip_fraction"] >= 0.0 and history[0]["selected_n"] == len(selected)


def test_a_threshold_that_keeps_nothing_passes_the_policy_on(tmp_path):
    from test_loop import PROMPTS as LOOP_PROMPTS
    from test_loop import make_loop

    from raft.infra.atomic import is_complete
    from raft.selection.selectors import ThresholdSelection

    history = make_loop(tmp_path, iterations=2, selector=ThresholdSelection(threshold=1e9)).run_iterations(LOOP_PROMPTS)
    assert [h["selected_n"] for h in history] == [0, 0]
    assert is_complete(tmp_path / "iter_001" / "checkpoint")
    assert json.loads((tmp_path / "iter_001" / "filtered.json").read_text()) == {}


def test_the_method_configs_compose_and_build(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import raft.cli.resolvers  # noqa: F401
    from raft.cli.main import CONFIG_DIR
    from raft.modules.reinforce_rej import ReinforceRejModule
    from raft.selection.selectors import KeepAll, LocalRanking, ThresholdSelection
    from raft.tasks.raft import RaftTask

    base = ["model=tiny", f"task.output_dir={tmp_path}"]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*base, "task=grpo", "sampler.K=8", "module.kl_coef=0.05"])
        task = instantiate(cfg.task, _convert_="all")
        assert isinstance(task, RaftTask) and isinstance(task.selector, KeepAll) and task.sampler.K == 8
        assert task.module.func is GRPOModule and task.module.keywords["kl_coef"] == 0.05
        assert task.module.keywords["temperature"] == cfg.sampler.temperature  # pi_old at the sampling lambda
        assert task.module.keywords["optimizer_state"] == "run" and task.module.keywords["loss_type"] == "dapo"
        assert task.trainer.keywords["max_epochs"] == 1 and task.trainer.keywords["precision"] == cfg.trainer.precision
        cfg = compose("config", overrides=[*base, "module=raftpp", "selector=threshold", "selector.threshold=0.5"])
        task = instantiate(cfg.task, _convert_="all")
        assert isinstance(task, RaftTask) and task.module.func is RaftPPModule
        assert task.module.keywords["clip_range"] == 0.2 and task.module.keywords["lr"] == cfg.module.lr == 2e-5
        assert task.module.keywords["kl_coef"] == 0.001 and task.module.keywords["optimizer_state"] == "run"
        assert isinstance(task.selector, ThresholdSelection) and task.selector.threshold == 0.5
        cfg = compose("config", overrides=[*base, "selector.mixed_prompts_only=true"])
        selector = instantiate(cfg.task, _convert_="all").selector
        assert isinstance(selector, LocalRanking) and selector.mixed_prompts_only
        cfg = compose("config", overrides=[*base, "task=reinforce_rej"])
        task = instantiate(cfg.task, _convert_="all")
        assert isinstance(task.selector, KeepAll) and task.selector.mixed_prompts_only
        assert task.module.func is ReinforceRejModule and task.trainer.keywords["max_epochs"] == 1
        with pytest.raises(Exception, match="use selector=all"):  # RAFT's best-of-K would drop the negatives
            instantiate(compose("config", overrides=[*base, "module=reinforce_rej"]).task, _convert_="all")
