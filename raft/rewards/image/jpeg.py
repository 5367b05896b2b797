"""JPEG compressibility (as in DDPO): smaller files at a fixed quality mean simpler images."""

from __future__ import annotations

import io
from typing import Any, Sequence

from raft.rewards.base import Reward


class JpegCompressibilityReward(Reward):
    """Reward = -(JPEG size in kB) at `quality`; prompts are ignored."""

    def __init__(self, quality: int = 95, batch_size: int = 64):
        if not 1 <= quality <= 95:
            raise ValueError(f"reward.quality must be in [1, 95] (Pillow's useful range), got {quality}")
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        self.quality, self.batch_size = quality, batch_size

    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        scores = []
        for image in responses:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=self.quality)
            scores.append(-buffer.tell() / 1000)
        return scores
