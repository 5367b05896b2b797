"""A rule-based reward that counts matches of a regular expression in the response.

Useful for format rewards, and as a deliberately exploitable reward: paying for '#' reproduces the
paper's reward-hacking episode (appendix A.2), which the monitor and the post-filters must catch.
"""

from __future__ import annotations

import re
from typing import Sequence

from raft.rewards.base import Reward


class PatternCount(Reward):
    """Reward = weight * number of matches of `pattern`, capped at `max_count` matches when given."""

    batch_size = 1024

    def __init__(self, pattern: str, weight: float = 1.0, max_count: int | None = None):
        try:
            self.regex = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"reward.pattern={pattern!r} is not a regular expression: {error}") from error
        if max_count is not None and max_count < 1:
            raise ValueError(f"reward.max_count must be >= 1 or null, got {max_count}")
        self.weight, self.max_count = weight, max_count

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        counts = [len(self.regex.findall(r)) for r in responses]
        if self.max_count is not None:
            counts = [min(c, self.max_count) for c in counts]
        return [self.weight * c for c in counts]
