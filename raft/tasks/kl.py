"""How far a stage's policy has moved from the initial one: KL(p_theta || p_0) from fresh samples of it.

Both RAFT and PPO report it as `kl`, measured on the policy each iteration produced (not on the samples it
trained on, which RAFT draws at its own temperature and PPO from the policy entering the iteration).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from raft.evaluation.metrics.rewards import mean
from raft.policies.base import Policy
from raft.sampling.samples import Sample
from raft.tasks.runner import seed_stage


def add_log_probs(policy: Policy, samples: list[Sample], checkpoint: Path | None, reference: Path | None) -> None:
    """log p of each sample under `checkpoint` and under the initial policy `reference` (logp, ref_logp)."""
    current = policy.log_probs(checkpoint, samples)
    initial = current if checkpoint == reference else policy.log_probs(reference, samples)
    for s, lp, ref in zip(samples, current, initial):
        s.logp, s.ref_logp = lp, ref


def kl_samples(
    policy: Policy,
    checkpoint: Path,
    reference: Path | None,
    batch: list[tuple[int, str]],
    sampler: Any,
    stage: Path,
    seed: int,
    t: int,
) -> list[Sample]:
    """One fresh response per prompt from `checkpoint` (the policy a stage produced), drawn from p_theta itself
    (temperature 1, no top-k / top-p, none of the sampler's generation_kwargs), with its log-probability under
    that policy and the initial one: the mean of logp - ref_logp is an unbiased estimate of KL(p_theta || p_0) in
    nats per response, whatever temperature the stage sampled at."""
    seed_stage(seed, t)
    plain = dataclasses.replace(sampler, K=1, temperature=1.0, top_k=0, top_p=1.0, generation_kwargs={})
    samples = policy.sample(checkpoint, batch, plain, stage)
    add_log_probs(policy, samples, checkpoint, reference)
    return samples


def kl_estimate(samples: Sequence[Sample]) -> float:
    """Mean of logp - ref_logp over `kl_samples`: nats per response."""
    return mean([s.logp - s.ref_logp for s in samples])
