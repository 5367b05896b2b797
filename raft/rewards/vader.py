"""VADER lexicon sentiment of the response: a fast rule-based text reward that needs no weights."""

from __future__ import annotations

from typing import Sequence

from raft.rewards.base import Reward

FIELDS = ("compound", "pos", "neg", "neu")


class VaderSentiment(Reward):
    """Reward = one of VADER's polarity scores; `compound` lies in [-1, 1]."""

    batch_size = 256

    def __init__(self, field: str = "compound"):
        if field not in FIELDS:
            raise ValueError(f"reward.field must be one of {FIELDS}, got {field!r}")
        self.field = field
        self._analyzer = None

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        return [self._analyzer.polarity_scores(r)[self.field] for r in responses]

    def close(self) -> None:
        self._analyzer = None
