"""One batched interface for every reward: text, reward models and image scorers."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

from raft.infra.errors import StageError


class Reward(ABC):
    """Scores (prompt, response) pairs. Responses are strings for text and PIL images for images.

    Heavy rewards load their weights lazily on the first call and free them in `close()`, so the loop
    never holds the reward model and the policy in memory during fine-tuning.
    """

    batch_size: int = 32
    binary: bool = False  # scores are 0 or 1 (a verifier): the evaluator reports accuracy and pass@K

    @abstractmethod
    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        """Return one finite float per pair."""

    def __call__(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if len(prompts) != len(responses):
            raise StageError(f"reward got {len(prompts)} prompts but {len(responses)} responses")
        scores: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = self.score_batch(prompts[i : i + self.batch_size], responses[i : i + self.batch_size])
            scores += checked(self, batch, len(prompts[i : i + self.batch_size]), offset=i)
        return scores

    def close(self) -> None:  # noqa: B027 (a default that does nothing, not an abstract method)
        """Free any weights held. Called by the loop when scoring is done."""


def require_reward(reward: Any, field: str) -> None:
    """A reward is a `Reward` (its batching, checks, `binary` and `close` come from the base class): anything else
    stops here, naming the config key, rather than minutes in."""
    if not isinstance(reward, Reward):
        raise ValueError(
            f"{field}: {type(reward).__name__} is not a raft.rewards.base.Reward; subclass it (score_batch), "
            "or wrap a plain function with reward=function"
        )


def checked(reward: Reward, scores: Any, expected: int, offset: int = 0) -> list[float]:
    """One finite float per input, or a one-line StageError naming the reward: a NaN must never be ranked."""
    name = type(reward).__name__
    try:
        values = list(scores)
    except TypeError:
        raise StageError(f"reward {name} returned {type(scores).__name__}, not one score per response") from None
    if len(values) != expected:
        raise StageError(f"reward {name} returned {len(values)} scores for {expected} responses")
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise StageError(f"reward {name} returned {value!r} for response {offset + i}, not a number") from None
        if not math.isfinite(number):
            raise StageError(f"reward {name} returned {number} for response {offset + i}; scores must be finite")
        out.append(number)
    return out
