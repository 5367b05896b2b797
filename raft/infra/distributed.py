"""Which process of a multi-process launch this is (torchrun, SLURM tasks), and waiting on rank 0's files.

Under `torchrun --nproc_per_node=N -m raft ... trainer=ddp` (or N SLURM tasks) every process runs the same
task. RAFT's loop then samples, scores, selects and evaluates on global rank 0 only; the other ranks wait
for the stage files and join the fine-tuning, where Lightning's DDP/FSDP strategy splits the selected set.
Lightning takes the ranks from the same environment, so it launches no processes of its own.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return default


def global_rank() -> int:
    return _env_int("RANK", "SLURM_PROCID", default=0)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)


def world_size() -> int:
    return _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)


def is_rank_zero() -> bool:
    return global_rank() == 0


def wait_for(path: Path, poll_s: float = 1.0, timeout_s: float | None = None) -> Path:
    """Block until rank 0 has written `path` (its writes are atomic: a file that exists is whole)."""
    started = time.monotonic()
    while not Path(path).exists():
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"rank {global_rank()}: {path} did not appear within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return Path(path)


def train_along(folder: Path, finetune: Callable[[Path], None]) -> None:
    """A rank other than 0 joins a distributed fit. Rank 0 saves the result, so this rank's output folder
    (`folder/.rank<N>`) is scratch, removed afterwards."""
    scratch = Path(folder) / f".rank{global_rank()}"
    finetune(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
