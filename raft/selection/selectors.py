"""Data ranking (paper step 2): keep the best samples by reward, optionally KL-penalised (eq. 5).

Also the selections of Xiong et al. 2025 ("A Minimalist Approach to LLM Reasoning"): every sample at or
above a reward threshold (`ThresholdSelection`); every sample (`KeepAll`: GRPO and Reinforce-Rej train on
negatives too); and, on any of them, `mixed_prompts_only`: Reinforce-Rej's prompt filter, which drops a prompt
whose K rewards are all equal (all solved, all failed): it carries no signal about which response is better.
The filter alone does not make a method Reinforce-Rej: that is `task=reinforce_rej` (this filter with
`KeepAll` and `module=reinforce_rej`, a clipped policy gradient with negatives).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Protocol, Sequence

from raft.sampling.samples import Sample


class Selector(Protocol):
    """What the loop reads of a selector: the samples it keeps, and what it needs before it can choose."""

    needs_log_probs: bool  # the ranking is KL-penalised: every sample needs log p under the current and initial policy
    mixed_prompts_only: bool  # first drop the prompts whose K rewards are all equal (Reinforce-Rej's filter)

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]: ...


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


def groups_by_prompt(samples: Sequence[Sample]) -> dict[int, list[Sample]]:
    """The samples of each prompt index, in sample order (equal prompt texts stay separate)."""
    groups: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.prompt_idx].append(s)
    return groups


def mixed_prompts(samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """(the samples of prompts whose rewards differ, how many prompts were dropped): Reinforce-Rej's filter."""
    kept, dropped = [], 0
    for group in groups_by_prompt(samples).values():
        if len({s.reward for s in group}) > 1:
            kept += group
        else:
            dropped += 1
    return kept, dropped


class LocalRanking:
    """Best of K per prompt, grouped by prompt index (equal prompt texts stay separate)."""

    def __init__(self, beta: float = 0.0, mixed_prompts_only: bool = False):
        _check(beta, None)
        self.beta, self.mixed_prompts_only = beta, mixed_prompts_only

    @property
    def needs_log_probs(self) -> bool:
        return self.beta > 0

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        # max() keeps the first of tied samples, so ties resolve by sample order: deterministic.
        return [max(group, key=lambda s: ranking_score(s, self.beta)) for group in groups_by_prompt(samples).values()]


class ThresholdSelection:
    """Every sample whose reward is at least `threshold`, however many a prompt has (RAFT in Xiong et al. 2025:
    with a 0/1 verifier and threshold 1, every correct response)."""

    needs_log_probs = False

    def __init__(self, threshold: float = 1.0, mixed_prompts_only: bool = False):
        if not math.isfinite(threshold):
            raise ValueError(f"selector.threshold must be a finite number, got {threshold}")
        self.threshold, self.mixed_prompts_only = threshold, mixed_prompts_only

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if ranking_score(s, 0.0) >= self.threshold]


class KeepAll:
    """Every sample (GRPO, Reinforce-Rej: the module weighs each by its advantage, negatives included)."""

    needs_log_probs = False

    def __init__(self, mixed_prompts_only: bool = False):
        self.mixed_prompts_only = mixed_prompts_only

    def __call__(self, samples: Sequence[Sample]) -> list[Sample]:
        return list(samples)


class GlobalRanking:
    """Top share of all b*K samples of the batch (appendix A.2); share defaults to 1/K."""

    def __init__(self, beta: float = 0.0, acceptance_ratio: float | None = None):
        _check(beta, acceptance_ratio)
        self.beta = beta
        self.acceptance_ratio = acceptance_ratio
        self.mixed_prompts_only = False  # ranks across prompts: a prompt's own K play no part

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
