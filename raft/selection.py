"""Data ranking (paper step 2): keep the best samples by reward, optionally KL-penalised (eq. 5)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

from raft.samples import Sample


def _check(beta: float, acceptance_ratio: float | None) -> None:
    if beta < 0:
        raise ValueError(f"selector.beta must be >= 0, got {beta}")
    if acceptance_ratio is not None and not 0 < acceptance_ratio <= 1:
        raise ValueError(f"selector.acceptance_ratio must be in (0, 1], got {acceptance_ratio}")


def ranking_score(sample: Sample, beta: float) -> float:
    """r - beta * (log p_theta - log p_0): the KL-penalised reward of eq. (5); plain reward when beta = 0."""
    if sample.reward is None:
        raise ValueError(f"sample {sample.prompt_idx}/{sample.sample_idx} has no reward; score before selecting")
    if beta == 0:
        return sample.reward
    if sample.logp is None or sample.ref_logp is None:
        raise ValueError("KL-penalised ranking needs logp and ref_logp on every sample")
    return sample.reward - beta * (sample.logp - sample.ref_logp)


class LocalRanking:
    """Best of K per prompt, grouped by prompt index (equal prompt texts stay separate)."""

    def __init__(self, beta: float = 0.0):
        _check(beta, None)
        self.beta = beta

    @property
    def needs_log_probs(self) -> bool:
        return self.beta > 0

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        groups: dict[int, list[Sample]] = defaultdict(list)
        for s in samples:
            groups[s.prompt_idx].append(s)
        # max() keeps the first of tied samples, so ties resolve by sample order: deterministic.
        return [max(group, key=lambda s: ranking_score(s, self.beta)) for group in groups.values()]


class GlobalRanking:
    """Top share of all b*K samples of the batch (appendix A.2); share defaults to 1/K."""

    def __init__(self, beta: float = 0.0, acceptance_ratio: float | None = None):
        _check(beta, acceptance_ratio)
        self.beta = beta
        self.acceptance_ratio = acceptance_ratio

    @property
    def needs_log_probs(self) -> bool:
        return self.beta > 0

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        if not samples:
            return []
        k = len(samples) / len({s.prompt_idx for s in samples})
        ratio = self.acceptance_ratio if self.acceptance_ratio is not None else 1 / k
        keep = max(1, math.ceil(ratio * len(samples) - 1e-9))
        ranked = sorted(samples, key=lambda s: ranking_score(s, self.beta), reverse=True)
        return ranked[:keep]
