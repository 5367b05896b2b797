"""Peak memory of the training process, per stage: the paper's memory argument (one model vs four)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import torch

_carried_rss_mb = 0.0  # the task's peak from before the last `stage_peak` reset of VmHWM


def _clear_vm_hwm() -> None:
    try:  # Linux: writing 5 resets VmHWM (peak resident set size) of this process
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def reset_peak_memory() -> None:
    """Start a new high-water mark, so each stage of a pipeline reports its own peak."""
    global _carried_rss_mb
    _carried_rss_mb = 0.0
    _clear_vm_hwm()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    """Peak resident memory (MiB) since the last reset and, on a GPU, peak allocated GPU memory."""
    out = {"peak_rss_mb": max(_carried_rss_mb, _vm_hwm_mb())}
    if torch.cuda.is_available():
        out["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


@contextmanager
def stage_cost(costs: dict[str, float], name: str):
    """costs["seconds_<name>"] and costs["peak_rss_mb_<name>"]: the block's wall time and its own peak RSS (MiB),
    e.g. an iteration's sampling or training, or the whole step around them (stages nest). The task's peak
    (`peak_memory`) still counts what came before. A stage read back from its file costs about 0 s, and its peak
    is then the process's resident size."""
    global _carried_rss_mb
    before = max(_carried_rss_mb, _vm_hwm_mb())
    _carried_rss_mb = 0.0  # from here on: this block's peak, and the peaks of the stages inside it
    _clear_vm_hwm()
    started = time.time()
    try:
        yield
    finally:
        own = max(_carried_rss_mb, _vm_hwm_mb())
        seconds, peak = f"seconds_{name}", f"peak_rss_mb_{name}"
        costs[seconds] = round(costs.get(seconds, 0.0) + time.time() - started, 2)
        costs[peak] = max(costs.get(peak, 0.0), own)
        _carried_rss_mb = max(before, own)


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
    _trim_heap()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)


def check_heap_mmap_threshold(mb: float | None) -> None:
    if mb is not None and mb <= 0:
        raise ValueError(f"task.heap_mmap_threshold_mb must be > 0 or null, got {mb}")


def bound_heap_growth(mb: float | None) -> None:
    """`task.heap_mmap_threshold_mb`: every block over `mb` MiB gets its own mapping, returned to the OS when freed.

    Left alone, glibc raises its mmap threshold to the largest block freed so far (up to 32 MiB), so a training
    stage's activations, of a new shape at every batch, come from the heap and fragment it: over one HH-RLHF
    stage (32 rows x ~450 tokens, batch 8) the resident set grew 1.4 GB above what was alive (peak 4.95 GB; 3.58
    GB at 1 MiB). Fresh pages for every large tensor cost time (HH sampling 1.3x as long), so it is opt-in.
    None leaves glibc's behaviour (and a MALLOC_MMAP_THRESHOLD_ in the environment) as it is.
    """
    check_heap_mmap_threshold(mb)
    mallopt = _libc("mallopt") if mb is not None else None
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, int(mb * 2**20))


def _trim_heap() -> None:
    """glibc keeps freed blocks (a stage's model, its KV caches) in the process's heap, so the resident size
    never falls after a stage and the next stage's peak sits on top of it; `malloc_trim` returns them."""
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


@functools.cache
def _libc(name: str):
    """A glibc function, looked up once (find_library runs ldconfig); None where it has none (macOS, musl)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None
