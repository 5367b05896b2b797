"""The unit of data that flows between the stages of the loop, and its on-disk form."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from raft.atomic import atomic_write_text


@dataclass
class Sample:
    """One response to one prompt. Prompts are keyed by index, never by text (equal prompts exist)."""

    prompt_idx: int
    prompt: str
    response: str  # text, or an image path relative to the stage folder
    sample_idx: int = 0
    reward: float | None = None
    logp: float | None = None  # log p_theta(response | prompt) under the sampling policy
    ref_logp: float | None = None  # the same under the initial policy (KL-penalised ranking)


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    lines = (json.dumps(dataclasses.asdict(s), ensure_ascii=False) for s in samples)
    atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


def read_samples(path: Path) -> list[Sample]:
    with open(path, encoding="utf-8") as f:
        return [Sample(**json.loads(line)) for line in f if line.strip()]
