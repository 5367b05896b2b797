"""Peak memory of the training process, per stage: the paper's memory argument (one model vs four)."""

from __future__ import annotations

import gc
import resource
from pathlib import Path

import torch


def reset_peak_memory() -> None:
    """Start a new high-water mark, so each stage of a pipeline reports its own peak."""
    try:  # Linux: writing 5 resets VmHWM (peak resident set size) of this process
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    """Peak resident memory (MiB) since the last reset and, on a GPU, peak allocated GPU memory."""
    out = {"peak_rss_mb": _vm_hwm_mb()}
    if torch.cuda.is_available():
        out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _vm_hwm_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # whole-process peak, KiB


def release_memory() -> None:
    """Hand freed tensors back between stages, so the next model loads into the room the last one left."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
