"""The rows a tracker shows of a stage: its scored samples, selected or rejected, with their rewards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from raft.sampling.samples import Sample, read_samples

COLUMNS = ["iteration", "prompt_idx", "sample_idx", "prompt", "response", "reward", "selected"]


@dataclass
class SampleRow:
    iteration: int
    prompt_idx: int
    sample_idx: int
    prompt: str
    response: str
    reward: float | None
    selected: bool
    image: Path | None = None  # an image run's sample: its PNG in the stage folder

    def values(self) -> list:
        return [getattr(self, c) for c in COLUMNS]


def stage_rows(stage_dir: Path, iteration: int, selected: Sequence[Sample], limit: int) -> list[SampleRow]:
    """All K samples of the stage's first prompts (whole prompts, at most `limit` rows, at least one prompt), each
    marked selected or not; only the selected ones when the stage kept no `scored.jsonl`."""
    if limit <= 0:
        return []
    chosen = {(s.prompt_idx, s.sample_idx) for s in selected}
    scored_path = Path(stage_dir) / "scored.jsonl"
    samples = read_samples(scored_path) if scored_path.exists() else list(selected)
    prompts = list(dict.fromkeys(s.prompt_idx for s in samples))
    rows: list[SampleRow] = []
    for prompt_idx in prompts:
        group = sorted((s for s in samples if s.prompt_idx == prompt_idx), key=lambda s: s.sample_idx)
        if rows and len(rows) + len(group) > limit:
            break
        rows += [_row(stage_dir, iteration, s, (s.prompt_idx, s.sample_idx) in chosen) for s in group]
    return rows[:limit]


def _row(stage_dir: Path, iteration: int, s: Sample, selected: bool) -> SampleRow:
    image = Path(stage_dir) / s.response if s.response.endswith(".png") else None
    return SampleRow(
        iteration,
        s.prompt_idx,
        s.sample_idx,
        s.prompt,
        s.response,
        s.reward,
        selected,
        image if image is not None and image.is_file() else None,
    )
