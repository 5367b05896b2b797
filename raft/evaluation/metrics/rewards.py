"""Reward summaries of a stage's samples."""

from __future__ import annotations

from typing import Sequence

from raft.sampling.samples import Sample


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def reward_metrics(samples: Sequence[Sample], who: str = "policy") -> dict:
    """Mean reward of all K samples, and of the best sample per prompt (best-of-K), named after who sampled."""
    by_prompt: dict[int, list[float]] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt_idx, []).append(s.reward)
    best = "best_of_k_reward" if who == "policy" else f"{who}_best_of_k_reward"
    return {
        f"{who}_reward": mean([r for rs in by_prompt.values() for r in rs]),
        best: mean([max(rs) for rs in by_prompt.values()]),
    }
