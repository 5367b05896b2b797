"""One run folder, one configuration, one process at a time.

A command run again resumes in its folder; that is only right if it is the same configuration. The folder
keeps a fingerprint of the composed config (`config_fingerprint.json`) without the keys that cannot change
what finished stages hold (how many seeds a sweep has, how long the run goes on, evaluation cadence,
threads, trackers); a different configuration stops with the keys that differ. An exclusive lock keeps a
second process out of a folder that one is working in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from raft.atomic import atomic_write_text
from raft.locks import FolderBusy, file_lock

FINGERPRINT = "config_fingerprint.json"
IGNORED_KEYS = {"seeds", "objective", "logger", "allow_changed_config", "hydra"}
# anywhere in the tree: how long and how a run runs, not what it computes
IGNORED_LEAVES = {"iterations", "every", "torch_threads", "heap_mmap_threshold_mb", "keep_checkpoints"}
_held: dict[Path, Any] = {}  # folder -> its lock, held as long as the process lives


def fingerprint(cfg: DictConfig) -> dict[str, str]:
    """Dotted key -> value (interpolations as written) of everything that decides a run's results."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                dotted = f"{prefix}{key}"
                if dotted not in IGNORED_KEYS and str(key) not in IGNORED_LEAVES:
                    walk(value, dotted + ".")
        else:
            flat[prefix[:-1]] = json.dumps(node, sort_keys=True, default=str)

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return flat


def remove_stale_temporaries(run_dir: Path) -> None:
    """Files a killed write left under their temporary names (raft/atomic.py): garbage once the lock is ours."""
    for stale in run_dir.rglob(".*.tmp"):
        if "wandb" not in stale.relative_to(run_dir).parts:  # W&B's own files are W&B's business
            stale.unlink(missing_ok=True)


def claim(run_dir: Path, cfg: DictConfig, allow_changed: bool = False) -> None:
    """Lock `run_dir` for this process and check (or record) its configuration; ValueError in one line."""
    run_dir = Path(run_dir).resolve()
    if run_dir not in _held:  # a sweep runs many jobs in one process, and may come back to a folder
        lock = file_lock(run_dir / ".raft.lock", wait=False)
        try:
            lock.__enter__()
        except FolderBusy:
            raise ValueError(
                f"another raft process is working in {run_dir}: wait for it to finish, or run elsewhere (name=...)"
            ) from None
        _held[run_dir] = lock
        remove_stale_temporaries(run_dir)
    current = fingerprint(cfg)
    path = run_dir / FINGERPRINT
    if path.exists() and not allow_changed:
        recorded = json.loads(path.read_text())
        changed = sorted(k for k in recorded.keys() | current.keys() if recorded.get(k) != current.get(k))
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise ValueError(
                f"{run_dir} holds a run of another configuration ({shown} differ): start it in a new folder "
                "(name=...), or continue this one with allow_changed_config=true"
            )
    atomic_write_text(path, json.dumps(current, indent=1, sort_keys=True))
