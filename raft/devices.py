"""Where and in which precision models run: one device rule and one dtype table for every policy and reward."""

from __future__ import annotations

import torch

from raft.distributed import local_rank

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(name: str, field: str = "dtype") -> None:
    """Fail at construction on a dtype name that is not in DTYPES."""
    if name not in DTYPES:
        raise ValueError(f"{field} must be one of {sorted(DTYPES)}, got {name!r}")


def dtype_of(name: str, field: str = "dtype") -> torch.dtype:
    """The torch dtype of a name from DTYPES."""
    check_dtype(name, field)
    return DTYPES[name]


def pick_device(device: str | None = "auto") -> torch.device:
    """`auto` (or None): this process's GPU when there is one (one GPU per process when torchrun / SLURM
    started several), else the CPU; anything else is taken as a torch device name."""
    if device is None or device == "auto":
        return torch.device(f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
