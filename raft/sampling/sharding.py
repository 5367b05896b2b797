"""Every process samples: under torchrun / SLURM each rank samples and scores its share of a stage's prompts
and writes its part; rank 0 merges the parts into the stage file, in the order one process would write it.

A part is written atomically like every stage file, so a killed run keeps the parts it finished; the merged
file replaces them, and once it exists no rank samples that stage again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from raft.infra.distributed import wait_for
from raft.sampling.samples import Sample, read_samples, write_samples


def share(batch: Sequence[tuple[int, str]], rank: int, world: int) -> list[tuple[int, str]]:
    """Rank `rank`'s prompts of the stage: every world-th, so each share has the same mix of lengths."""
    return list(batch[rank::world])


def part_path(path: Path, rank: int, world: int) -> Path:
    return path.with_name(f"{path.stem}.part{rank}of{world}{path.suffix}")


def seed_share(seed: int, t: int, rank: int) -> None:
    """Stage t's draws on rank `rank`: its own stream, the same on every restart."""
    torch.manual_seed((seed * 1_000 + t) * 1_000 + rank)


def write_part(path: Path, rank: int, world: int, samples: Sequence[Sample]) -> None:
    write_samples(part_path(path, rank, world), samples)


def read_part(path: Path, rank: int, world: int) -> list[Sample] | None:
    part = part_path(path, rank, world)
    return read_samples(part) if part.exists() else None


def merge_parts(path: Path, batch: Sequence[tuple[int, str]], world: int) -> list[Sample]:
    """Rank 0: wait for every rank's part of `path` and write them as one file in the batch's prompt order
    (each prompt's samples by sample_idx). The parts stay until `remove_parts`: a run killed between two
    merges still has them."""
    order = {idx: i for i, (idx, _) in enumerate(batch)}
    parts = [wait_for(part_path(path, r, world)) for r in range(world)]
    samples = sorted((s for p in parts for s in read_samples(p)), key=lambda s: (order[s.prompt_idx], s.sample_idx))
    write_samples(path, samples)
    return samples


def remove_parts(stage: Path, world: int) -> None:
    for part in stage.glob(f"*.part*of{world}.jsonl"):
        part.unlink(missing_ok=True)
