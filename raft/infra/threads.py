"""`task.torch_threads`: how many CPU threads torch may use, set by the task itself (not only OMP_NUM_THREADS)."""

from __future__ import annotations

import torch


def check_torch_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise ValueError(f"task.torch_threads must be >= 1 or null, got {threads}")


def use_torch_threads(threads: int | None) -> None:
    """Small models on shared CPU cores: extra threads mostly wait on each other (4-10x slower seen here)."""
    check_torch_threads(threads)
    if threads:
        torch.set_num_threads(threads)
