"""`task=grpo`: GRPO's iteration (Shao et al. 2024) on RAFT's stages, run by the same runner.

Per iteration: sample K responses per prompt with the run's sampler (`sampler.K`), score them with the
run's reward, fit `module=grpo` (raft/modules/grpo.py) on every sample with advantages normalised within
each prompt's K, save the stage checkpoint, sample the KL estimate. Sampling, scoring, the stage files
(samples.jsonl, scored.jsonl, checkpoint/, kl_samples.jsonl, metrics.json), resume and evaluation are
RAFT's (raft/tasks/raft.py); what differs is that nothing is selected away and the module weighs each
response by its advantage. Like RAFT, each stage starts a fresh optimiser from the previous checkpoint.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from raft.atomic import atomic_dir, is_complete
from raft.modules.grpo import GRPOModule
from raft.resources import release_memory, stage_cost
from raft.runner import seed_stage
from raft.samples import Sample
from raft.tasks.raft import RaftTask
from raft.validation import require_module


class GRPOTask(RaftTask):
    distributed = False  # one process: the stage's fit is not joined by other ranks (see RaftTask.follow)

    def __init__(
        self,
        policy,
        reward,
        sampler,
        module: Callable,
        trainer: Callable,
        monitor: Any = None,
        track_kl: bool = True,
        **run: Any,  # the runner's: output_dir, data, evaluator, logger, iterations, batch_size, seed, ...
    ):
        require_module(module, GRPOModule, "grpo")
        if getattr(policy, "modality", "text") != "text":
            raise ValueError(f"task=grpo needs a causal-LM policy, got {type(policy).__name__}")
        if sampler.K < 2:
            raise ValueError(f"sampler.K must be >= 2 for task=grpo (advantages compare a prompt's K), got {sampler.K}")
        super().__init__(policy, reward, sampler, None, module, trainer, monitor=monitor, track_kl=track_kl, **run)

    def step(self, t: int, batch: list[tuple[int, str]]) -> tuple[dict, list[Sample]]:
        stage, checkpoint = self.stage_dir(t), self.checkpoint(t - 1)
        costs: dict[str, float] = {}  # seconds and peak memory of each stage
        # 1. K responses per prompt from the current policy; 2. their rewards
        seed_stage(self.seed, t)
        with stage_cost(costs, "sampling"):
            samples = self.stage(
                stage / "samples.jsonl", lambda: self.policy.sample(checkpoint, batch, self.sampler, stage)
            )
        with stage_cost(costs, "scoring"):
            scored = self.stage(stage / "scored.jsonl", lambda: self.score(samples, stage, checkpoint))
        # 3. the GRPO update on all of them (again if the checkpoint fails its manifest check)
        if not is_complete(self.checkpoint_dir(t)):
            seed_stage(self.seed, t)  # a resumed stage shuffles its minibatches as the uninterrupted one did
            module = functools.partial(self.module, reference=self.load_reference)
            with stage_cost(costs, "training"), atomic_dir(self.checkpoint_dir(t)) as tmp:
                self.policy.finetune(checkpoint, scored, tmp, module, self.tracked(self.trainer, t))
            release_memory()
        # 4. KL(policy this stage produced || initial policy), from fresh samples, as for RAFT and PPO
        with stage_cost(costs, "kl"):
            kl = self.stage(stage / "kl_samples.jsonl", lambda: self.kl_samples(t, batch)) if self.tracks_kl else []
        metrics = self.metrics(t, scored, scored, kl, stage)  # every sample is trained on: "selected" = all
        metrics.update(costs)
        return metrics, scored

    def load_reference(self):
        """The initial policy (the model, or init_checkpoint) in float32: GRPO's KL reference."""
        model, _ = self.policy.load(self.init_checkpoint, "float32")
        return model
