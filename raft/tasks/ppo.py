"""`task=ppo`: the PPO iteration of the paper's baseline (section 4, appendix C), run by the same runner as RAFT.

Per iteration: sample one response per prompt (`sampler=ppo`: K = 1, temperature 1), score it with the same
Reward, compute old / reference log-probs and values, let Lightning run the PPO epochs (the module runs
`ppo_epochs` itself within the trainer's one epoch), save a checkpoint, sample the KL estimate.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from typing import Any, Callable

import torch

from raft.evaluation.metrics.diversity import distinct_n, duplicate_share, mean_length, msttr
from raft.evaluation.metrics.rewards import mean
from raft.infra import strict_json
from raft.infra.atomic import atomic_dir, atomic_write_text, is_complete
from raft.infra.resources import release_memory
from raft.modules.ppo import PPOModule
from raft.modules.rl.generation import token_batch
from raft.policies.causal_lm import CausalLMPolicy
from raft.rewards.base import require_reward
from raft.sampling.samples import Sample
from raft.tasks.kl import kl_estimate, kl_samples
from raft.tasks.runner import Runner, seed_stage
from raft.trainer.checks import check_partial, require_module
from raft.trainer.fit import fit
from raft.trainer.stage import TRAINING_STATS

log = logging.getLogger("raft")


class PPOTask(Runner):
    distributed = False  # PPOModule's rollouts and updates live in one process

    def __init__(
        self,
        policy,
        reward,
        sampler,
        module: Callable,
        trainer: Callable,
        precision: str = "32",
        **run: Any,  # the runner's: output_dir, data, evaluator, logger, iterations, batch_size, seed, ...
    ):
        require_module(module, PPOModule, "ppo")
        if not isinstance(policy, CausalLMPolicy):
            raise ValueError(
                f"task=ppo needs a causal-LM policy (model=smollm2, tiny, hf_causal_lm), got {type(policy).__name__}"
            )
        if sampler.K != 1:
            raise ValueError(f"sampler.K must be 1 for task=ppo (one rollout per prompt: sampler=ppo), got {sampler.K}")
        require_reward(reward, "reward")
        check_partial(module, "module")
        check_partial(trainer, "trainer")
        super().__init__(policy=policy, **run)
        self.reward, self.sampler, self.module, self.trainer, self.precision = (
            reward,
            sampler,
            module,
            trainer,
            precision,
        )
        self.ppo = self.tokenizer = None  # loaded when some iteration is left to run, kept across iterations
        self.scored_rollouts = None

    # -- one iteration -------------------------------------------------------------------------
    def step(self, t: int, batch: list[tuple[int, str]]) -> tuple[dict, list[Sample]]:
        if self.ppo is None:
            self.ppo, self.tokenizer = self.build_module(resume_from=t - 1)
        ppo, stage = self.ppo, self.stage_dir(t)
        ppo.to(self.policy.device).eval()  # Lightning's teardown leaves the module on the CPU
        # 1. roll out one response per prompt from the current policy, 2. score it (stage files, as RAFT's)
        seed_stage(self.seed, t)
        samples = self.stage(stage / "samples.jsonl", lambda: self.roll_out(batch))
        scored = self.stage(stage / "scored.jsonl", lambda: self.score(samples, stage))
        # 3. update: the PPO epochs over these rollouts, then save policy and state (once: a resumed stage whose
        # checkpoint is complete takes the state it saved)
        if is_complete(self.checkpoint_dir(t)):
            ppo.load_state(self.checkpoint_dir(t))
        else:
            rollouts = self.scored_rollouts if self.scored_rollouts is not None else self.rollouts(scored)
            ppo.set_rollouts(rollouts)  # scored just now, or computed again from the stage file
            self.scored_rollouts = None
            seed_stage(self.seed, t)  # the minibatch shuffles and dropout of an uninterrupted run
            ppo.train()  # Lightning 2 keeps the caller's mode; LoRA dropout is part of the recipe (Table 12)
            fit(self.tracked(self.trainer, t), ppo, default_root_dir=str(stage))
            with atomic_dir(self.checkpoint_dir(t)) as tmp:
                ppo.save_policy(tmp, self.tokenizer, base=self.init_checkpoint)  # what CausalLMPolicy.load reads
                ppo.save_state(tmp)
                atomic_write_text(tmp / TRAINING_STATS, strict_json.dumps(ppo.update_stats()))
            release_memory()
        # 4. how far the policy this update produced has moved from the initial one (as for RAFT)
        kl = self.stage(
            stage / "kl_samples.jsonl",
            lambda: kl_samples(
                self.policy, self.checkpoint_dir(t), self.init_checkpoint, batch, self.sampler, stage, self.seed, t
            ),
        )
        update = json.loads((self.checkpoint_dir(t) / TRAINING_STATS).read_text())  # this run's or the earlier one's
        return self.metrics(t, scored, kl, update), scored

    def roll_out(self, batch: list[tuple[int, str]]) -> list[Sample]:
        """One response per prompt from the policy being trained (in memory, at the sampling precision)."""
        with autocast(self.policy.device, "bf16" if self.policy.sample_dtype == "bfloat16" else "32"):
            return self.policy.generate(self.ppo.policy, self.tokenizer, batch, self.sampler)

    def score(self, samples: list[Sample], stage) -> list[Sample]:
        """The reward of each response, and its log-probability under the policy and the reference."""
        scores = self.reward([s.prompt for s in samples], [self.policy.response_for_reward(s, stage) for s in samples])
        self.reward.close()
        for s, reward in zip(samples, scores):
            s.reward = reward
        rollouts = self.scored_rollouts = self.rollouts(samples)  # the update takes them as they are
        mask = rollouts.response_mask.bool()
        for s, lp, ref in zip(
            samples, rollouts.logprobs.where(mask, 0).sum(1), rollouts.ref_logprobs.where(mask, 0).sum(1)
        ):
            s.logp, s.ref_logp = lp.item(), ref.item()
        return samples

    def rollouts(self, samples: list[Sample]):
        """Old and reference log-probs and values of the sampled tokens (scored), under the trainer's precision."""
        scores = [s.reward for s in samples]
        input_ids, attention_mask, response_mask = token_batch(samples, self.tokenizer.pad_token_id)
        with autocast(self.policy.device, str(self.precision)):
            return self.ppo.score_rollouts(
                input_ids,
                attention_mask,
                response_mask,
                torch.tensor(scores),
                batch_size=self.ppo.hparams.minibatch_size,
            )

    def build_module(self, resume_from: int):
        """The PPO module on the initial model, with the state of iteration `resume_from` when >= 0."""
        model, tokenizer = self.policy.load(self.init_checkpoint, "float32")
        ppo = self.module(model=model)
        if resume_from >= 0:
            ppo.load_state(self.checkpoint_dir(resume_from))
            log.info("PPO: resuming after iteration %d", resume_from)
        return ppo, tokenizer

    def release(self) -> None:
        self.ppo = self.tokenizer = None
        release_memory()

    # -- bookkeeping ---------------------------------------------------------------------------
    def metrics(self, t: int, samples: list[Sample], kl: list[Sample], update: dict) -> dict:
        rewards = [s.reward for s in samples]
        texts = [s.response for s in samples]
        # PPO trains on every sample (K = 1, no selection): best-of-K and "selected" are the samples themselves
        metrics = {
            "iteration": t,
            "policy_reward": mean(rewards),
            "best_of_k_reward": mean(rewards),
            "selected_reward": mean(rewards),
            "selected_n": len(samples),
            "selected_distinct_2": distinct_n(texts, 2),
            "selected_msttr_100": msttr(texts),
            "selected_length": mean_length(texts),
            "selected_duplicate_share": duplicate_share(texts),
            "capped_share": mean([float(s.truncated) for s in samples]),
            "kl": kl_estimate(kl),
        }  # the policy this stage produced, as for RAFT
        metrics.update({f"ppo_{k}": v for k, v in update.items()})  # ppo_kl: the rollouts' (entering policy)
        return metrics


def autocast(device: torch.device, precision: str):
    """The autocast a Lightning precision string implies, for passes run outside the Trainer."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()
