"""PPO baseline: hand-computed GAE, losses, KL controllers and reward shaping; one update on a tiny Llama."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import quiet_trainer

from raft.modules.rl.advantages import gae, whiten
from raft.modules.rl.kl_controller import AdaptiveKLController, FixedKLController
from raft.modules.rl.losses import policy_loss, value_loss
from raft.modules.rl.rewards import kl_shaped_rewards


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- GAE


def test_gae_by_hand_with_padding():
    # rewards r = [0, 0, 1 | pad], values v = [0.5, 0.4, 0.8 | 9 (pad, must be ignored)], gamma 1, lambda 0.95.
    # t=2 (last valid, next is terminal): delta = 1 + 0 - 0.8 = 0.2;            A2 = 0.2
    # t=1: delta = 0 + 0.8 - 0.4 = 0.4;    A1 = 0.4 + 0.95 * 0.2  = 0.59
    # t=0: delta = 0 + 0.4 - 0.5 = -0.1;   A0 = -0.1 + 0.95 * 0.59 = 0.4605
    # returns = A + v = [0.9605, 0.99, 1.0], and 0 on the padded token.
    rewards, values, mask = t([0, 0, 1, 5]), t([0.5, 0.4, 0.8, 9]), t([1, 1, 1, 0])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    assert adv.tolist()[0] == pytest.approx([0.4605, 0.59, 0.2, 0.0])
    assert ret.tolist()[0] == pytest.approx([0.9605, 0.99, 1.0, 0.0])


def test_gae_with_discount_and_lambda_one_gives_discounted_return():
    # gamma 0.5, lambda 1: return_t = sum_k gamma^k r_{t+k}, independent of the values.
    # rewards [1, 2, 4]: R2 = 4, R1 = 2 + 0.5 * 4 = 4, R0 = 1 + 0.5 * 4 = 3.
    rewards, values, mask = t([1, 2, 4]), t([0.3, -1.0, 2.0]), t([1, 1, 1])
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert ret.tolist()[0] == pytest.approx([3.0, 4.0, 4.0])
    assert adv.tolist()[0] == pytest.approx([2.7, 5.0, 2.0])


def test_whiten_uses_valid_tokens_only():
    # valid [1, 2, 3]: mean 2, unbiased variance 1 -> [-1, 0, 1]; the padded 100 is ignored and zeroed.
    out = whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]))
    assert out.tolist()[0] == pytest.approx([-1, 0, 1, 0], abs=1e-6)


# ---------------------------------------------------------------- losses


def test_policy_loss_by_hand_inside_and_outside_the_clip_range():
    # eps 0.2, per token loss = max(-A r, -A clip(r, 0.8, 1.2)):
    # r=1.1, A=+2 (inside):            max(-2.2, -2.2) = -2.2, not clipped
    # r=1.5, A=+1 (above, A>0):        max(-1.5, -1.2) = -1.2, clipped
    # r=1.5, A=-1 (above, A<0):        max( 1.5,  1.2) =  1.5, not clipped
    # r=0.5, A=-1 (below, A<0):        max( 0.5,  0.8) =  0.8, clipped
    # r=0.5, A=+1 (below, A>0):        max(-0.5, -0.8) = -0.5, not clipped
    # mean = (-2.2 - 1.2 + 1.5 + 0.8 - 0.5) / 5 = -0.32; clip fraction 2/5.
    ratios = torch.tensor([[1.1, 1.5, 1.5, 0.5, 0.5]])
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.5]])
    out = policy_loss(old + ratios.log(), old, t([2, 1, -1, -1, 1]), torch.ones(1, 5), clip_range=0.2)
    assert out.loss.item() == pytest.approx(-0.32, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(0.4)
    # k3 estimate (r - 1) - log r, averaged
    expected_kl = sum((r - 1) - math.log(r) for r in [1.1, 1.5, 1.5, 0.5, 0.5]) / 5
    assert out.approx_kl.item() == pytest.approx(expected_kl, rel=1e-5)
    assert out.entropy is None


def test_policy_loss_entropy_from_logits():
    # uniform over 4 tokens: entropy log 4 everywhere
    out = policy_loss(
        torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), logits=torch.zeros(1, 2, 4)
    )
    assert out.entropy.item() == pytest.approx(math.log(4))
    assert out.loss.item() == pytest.approx(-1.0)


def test_value_loss_by_hand():
    # old values 1.0 (0.0 for the last), clip 0.2, per token 0.5 * max((v - R)^2, (v_clip - R)^2):
    # v=1.1, R=2: unclipped 0.81, v_clip 1.1 -> 0.81                 -> 0.81, not clipped
    # v=1.5, R=2: unclipped 0.25, v_clip 1.2 -> 0.64                 -> 0.64, clipped
    # v=0.5, R=2: unclipped 2.25, v_clip 0.8 -> 1.44                 -> 2.25, not clipped
    # v=0.5, R=0, old 0: unclipped 0.25, v_clip 0.2 -> 0.04          -> 0.25, not clipped
    # loss = 0.5 * (0.81 + 0.64 + 2.25 + 0.25) / 4 = 0.49375; error = (0.81+0.25+2.25+0.25)/4 = 0.89
    out = value_loss(t([1.1, 1.5, 0.5, 0.5]), t([1, 1, 1, 0]), t([2, 2, 2, 0]), torch.ones(1, 4), clip_range_value=0.2)
    assert out.loss.item() == pytest.approx(0.49375)
    assert out.clip_fraction.item() == pytest.approx(0.25)
    assert out.error.item() == pytest.approx(0.89)


def test_losses_are_finite_with_empty_mask_and_infinite_log_probs():
    logp = torch.tensor([[0.0, -math.inf]], requires_grad=True)
    old = torch.tensor([[-math.inf, -math.inf]])
    empty = torch.zeros(1, 2)
    for mask in (empty, t([1, 0])):
        out = policy_loss(logp, old, t([1, 1]), mask)
        assert all(torch.isfinite(x) for x in (out.loss, out.clip_fraction, out.approx_kl))
        out.loss.backward()
        assert torch.isfinite(logp.grad).all()
        logp.grad = None
    assert value_loss(t([1, 2]), t([0, 0]), t([3, 4]), empty).loss.item() == 0.0
    assert whiten(t([1, 2]), empty).tolist() == [[0.0, 0.0]]
    adv, ret = gae(t([1, 2]), t([0, 0]), empty)
    assert adv.abs().sum().item() == 0.0 and ret.abs().sum().item() == 0.0


# ---------------------------------------------------------------- KL controllers and reward shaping


def test_fixed_kl_controller_never_moves():
    ctl = FixedKLController(0.05)
    assert ctl.update(current_kl=100.0, n_steps=1000) == 0.05


def test_adaptive_kl_controller_by_hand():
    # error = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + error * n_steps / horizon
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=1000)
    # KL 6.6: error 0.1 -> 0.1 * (1 + 0.1 * 100 / 1000) = 0.101
    assert ctl.update(6.6, n_steps=100) == pytest.approx(0.101)
    # KL 30: error 4 clipped to 0.2 -> 0.101 * (1 + 0.2 * 100 / 1000) = 0.10302
    assert ctl.update(30.0, n_steps=100) == pytest.approx(0.10302)
    # KL 0: error -1 clipped to -0.2 -> 0.10302 * (1 - 0.2 * 500 / 1000) = 0.092718
    assert ctl.update(0.0, n_steps=500) == pytest.approx(0.092718)


def test_kl_controllers_validate():
    with pytest.raises(ValueError, match="kl_target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="kl_coef"):
        FixedKLController(-1.0)


def test_kl_shaped_rewards_by_hand():
    # logp [-1, -2, -3 | pad], ref [-1.5, -1, -3 | pad]: kl = [0.5, -1, 0 | 0]
    # coef 0.1: -0.1 * kl = [-0.05, 0.1, 0]; score 2 minus baseline 0.5 lands on the last valid token.
    # A second row with no valid token gets nothing.
    logp = t([-1, -2, -3, -7], [-1, -1, -1, -1])
    ref = t([-1.5, -1, -3, -9], [0, 0, 0, 0])
    mask = t([1, 1, 1, 0], [0, 0, 0, 0])
    rewards, kl = kl_shaped_rewards(torch.tensor([2.0, 5.0]), logp, ref, mask, kl_coef=0.1, baseline=0.5)
    assert rewards.tolist()[0] == pytest.approx([-0.05, 0.1, 1.5, 0.0])
    assert rewards.tolist()[1] == [0.0, 0.0, 0.0, 0.0]
    assert kl.tolist()[0] == pytest.approx([0.5, -1.0, 0.0, 0.0])


# ---------------------------------------------------------------- one PPO update on a tiny Llama


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return LlamaForCausalLM(config)


def _fake_sampled_batch(batch=4, prompt=5, response=6):
    """Token ids standing in for sampled text: left-padded prompts, responses cut at an EOS (id 1)."""
    from raft.modules.rl.rollouts import response_mask

    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(3, 50, (batch, prompt), generator=g)
    prompt_att = torch.ones(batch, prompt, dtype=torch.long)
    prompt_ids[0, :2], prompt_att[0, :2] = 0, 0  # left padding in one row
    response_ids = torch.randint(3, 50, (batch, response), generator=g)
    response_ids[1, 3], response_ids[1, 4:] = 1, 0  # EOS then padding in another row
    mask = response_mask(response_ids, eos_token_id=1)
    assert mask[1].tolist() == [1, 1, 1, 1, 0, 0]  # the EOS itself is a response token
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_att, mask], dim=1)
    return input_ids, attention_mask, mask


def _quiet_trainer():
    return quiet_trainer(max_epochs=1)()


def test_one_ppo_update_moves_lora_and_value_head_but_not_the_reference(tmp_path):
    from raft.modules.ppo import PPOModule

    module = PPOModule(_tiny_llama(), lr=1e-2, ppo_epochs=2, minibatch_size=2, kl_coef=0.1)
    input_ids, attention_mask, mask = _fake_sampled_batch()
    rollouts = module.score_rollouts(input_ids, attention_mask, mask, scores=torch.full((4,), 1.0))
    # LoRA B starts at 0: before any update the policy is the reference, so the KL is exactly 0
    assert torch.allclose(rollouts.logprobs, rollouts.ref_logprobs)

    lora_before = {n: p.detach().clone() for n, p in module.named_parameters() if "lora_" in n}
    head_before = module.value_head.linear.weight.detach().clone()
    frozen_before = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    assert lora_before and frozen_before

    stats = module.set_rollouts(rollouts)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6) and stats["reward_mean"] == 1.0
    _quiet_trainer().fit(module)
    update = module.update_stats()
    assert update["skipped_updates"] == 0
    assert all(math.isfinite(update[k]) for k in ("loss", "clip_fraction", "approx_kl", "entropy", "value_error"))

    assert any(not torch.equal(p, lora_before[n]) for n, p in module.named_parameters() if "lora_" in n)
    assert not torch.equal(module.value_head.linear.weight, head_before)
    for n, p in module.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), n

    after = module.score_rollouts(input_ids, attention_mask, mask, scores=torch.full((4,), 1.0))
    assert torch.allclose(after.ref_logprobs, rollouts.ref_logprobs)  # adapter off = the initial model
    assert not torch.allclose(after.logprobs, rollouts.logprobs)  # the policy itself moved


def test_ppo_state_round_trip_and_full_finetune_keeps_a_frozen_copy(tmp_path):
    from raft.modules.ppo import PPOModule

    module = PPOModule(_tiny_llama(), lr=1e-2, ppo_epochs=1, minibatch_size=4, lora=False)
    assert module.reference is not None and not any(p.requires_grad for p in module.reference.parameters())
    input_ids, attention_mask, mask = _fake_sampled_batch()
    module.set_rollouts(module.score_rollouts(input_ids, attention_mask, mask, scores=torch.tensor([1.0, -1, 2, 0])))
    _quiet_trainer().fit(module)
    after = module.score_rollouts(input_ids, attention_mask, mask, scores=torch.zeros(4))
    assert not torch.allclose(after.logprobs, after.ref_logprobs)
    module.save_state(tmp_path / "state")

    resumed = PPOModule(_tiny_llama(), lr=1e-2, ppo_epochs=1, minibatch_size=4, lora=False)
    resumed.load_state(tmp_path / "state")
    again = resumed.score_rollouts(input_ids, attention_mask, mask, scores=torch.zeros(4))
    assert torch.allclose(again.logprobs, after.logprobs) and torch.allclose(again.values, after.values)
    assert resumed.kl_controller.value == module.kl_controller.value


def test_non_finite_loss_is_skipped_with_a_warning(caplog):
    from raft.modules.ppo import PPOModule

    module = PPOModule(_tiny_llama(), ppo_epochs=1, minibatch_size=4)
    input_ids, attention_mask, mask = _fake_sampled_batch()
    rollouts = module.score_rollouts(input_ids, attention_mask, mask, scores=torch.tensor([float("nan")] * 4))
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    with caplog.at_level("WARNING", logger="raft"):
        module.set_rollouts(rollouts)
        _quiet_trainer().fit(module)
    assert module.update_stats()["skipped_updates"] == 1
    assert "skipping a minibatch update" in caplog.text
    assert all(torch.equal(p, before[n]) for n, p in module.named_parameters() if p.requires_grad)


def test_kl_warnings(caplog):
    from raft.modules.ppo import PPOModule

    module = PPOModule(_tiny_llama(), kl_warn_negative=0.5, kl_warn_max=10.0)
    with caplog.at_level("WARNING", logger="raft"):
        module._warn_on_kl(-0.4)
        assert caplog.text == ""
        module._warn_on_kl(-0.6)
        assert "negative" in caplog.text
        module._warn_on_kl(11.0)
        assert "exceeds kl_warn_max" in caplog.text


def test_module_validates_its_config():
    from raft.modules.ppo import PPOModule

    with pytest.raises(ValueError, match="module.lam"):
        PPOModule(_tiny_llama(), lam=1.5)
    with pytest.raises(ValueError, match="module.minibatch_size"):
        PPOModule(_tiny_llama(), minibatch_size=0)


# ---------------------------------------------------------------- the PPO task on tiny-llama, with resume


def _ppo_task(run_dir, iterations, **overrides):
    import functools

    from raft.data.sources import EverydayPrompts
    from raft.evaluation.evaluator import Evaluator
    from raft.modules.ppo import PPOModule
    from raft.policies.causal_lm import CausalLMPolicy
    from raft.rewards.vader import VaderSentiment
    from raft.sampling.sampler import Sampler
    from raft.tasks.ppo import PPOTask

    reward = VaderSentiment()
    args = dict(
        output_dir=str(run_dir),
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu"),
        reward=reward,
        sampler=Sampler(K=1, temperature=1.0, max_new_tokens=6, batch_size=3),  # what sampler=ppo gives
        module=functools.partial(PPOModule, lr=1e-3, ppo_epochs=2, minibatch_size=2),
        trainer=quiet_trainer(max_epochs=1, gradient_clip_val=None),  # as task=ppo's trainer node
        data=EverydayPrompts(n_test=2, limit=8),
        evaluator=Evaluator(reward, Sampler(K=1, temperature=0.7, top_k=40, max_new_tokens=6, batch_size=4), every=2),
        iterations=iterations,
        batch_size=4,
        seed=0,
    )
    return PPOTask(**{**args, **overrides})


def test_ppo_task_writes_a_raft_shaped_run_and_resumes(tmp_path):
    import csv
    import json

    from raft.sampling.samples import read_samples

    task = _ppo_task(tmp_path, iterations=1)
    assert task.sampler.K == 1 and task.sampler.temperature == 1.0 and task.sampler.max_new_tokens == 6
    task.run()
    first = json.loads((tmp_path / "iter_000" / "metrics.json").read_text())
    assert first["policy_reward"] == first["best_of_k_reward"]  # K = 1
    assert first["ppo_kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout comes from the reference itself
    kl = read_samples(tmp_path / "iter_000" / "kl_samples.jsonl")  # the policy the update produced, as for RAFT
    assert len(kl) == 4 and first["kl"] == pytest.approx(sum(s.logp - s.ref_logp for s in kl) / 4)
    assert first["wall_time_s"] > 0 and first["peak_rss_mb"] > 0
    assert "eval_reward" not in first  # evaluator.every = 2
    assert (tmp_path / "iter_000" / "checkpoint" / "adapter_config.json").exists()
    assert len(read_samples(tmp_path / "iter_000" / "scored.jsonl")) == 4

    # a second, longer run in the same folder resumes after iteration 0 from its saved state
    task = _ppo_task(tmp_path, iterations=2)
    result = task.run()
    assert json.loads((tmp_path / "iter_000" / "metrics.json").read_text()) == first
    assert not (tmp_path / "iter_000" / "checkpoint").exists()  # keep_checkpoints = 1
    second = result["iterations"][1]
    assert second["iteration"] == 1 and "eval_reward" in second and second["kl"] != 0.0
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(evaluation) == {"before", "after"} and evaluation["after"]["reward"] == second["eval_reward"]
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["0", "1"]
    assert {"policy_reward", "kl", "wall_time_s", "ppo_kl_coef", "ppo_clip_fraction", "peak_rss_mb"} <= set(rows[0])


def test_ppo_refuses_more_than_one_sample_per_prompt_and_a_multi_process_launch(tmp_path, monkeypatch):
    from raft.sampling.sampler import Sampler

    with pytest.raises(ValueError, match="sampler.K must be 1"):
        _ppo_task(tmp_path, iterations=1, sampler=Sampler(K=4, max_new_tokens=6))
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: PPO's rollouts and updates live in one process
    with pytest.raises(ValueError, match="runs in one process, but this launch has 2"):
        _ppo_task(tmp_path, iterations=1)


def test_ppo_config_composes_and_builds(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import raft.cli.resolvers  # noqa: F401
    from raft.cli.main import CONFIG_DIR
    from raft.tasks.ppo import PPOTask

    overrides = ["task=ppo", "model=tiny", f"task.output_dir={tmp_path}", "task.iterations=2"]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)  # task=ppo brings module=ppo itself
        task = instantiate(cfg.task, _convert_="all")
        assert isinstance(task, PPOTask) and task.sampler.K == 1 and task.iterations == 2
        # what runs is what the composed config says: sampler=ppo, one trainer epoch, the trainer's precision
        assert (cfg.sampler.K, cfg.sampler.temperature, cfg.sampler.top_k, cfg.sampler.top_p) == (1, 1.0, 0, 1.0)
        assert task.sampler.temperature == 1.0 and task.precision == cfg.trainer.precision
        assert task.trainer.keywords["max_epochs"] == 1 and task.trainer.keywords["gradient_clip_val"] is None
        with pytest.raises(Exception, match="sampler.K must be 1"):
            instantiate(compose("config", overrides=overrides + ["sampler.K=4"]).task, _convert_="all")
        assert cfg.module.lr == 1e-5 and cfg.module.lora_rank == 16 and cfg.module.lam == 0.95
        with pytest.raises(Exception, match="task=ppo needs module=ppo"):
            instantiate(compose("config", overrides=overrides + ["module=sft"]).task, _convert_="all")
