"""Share the starting model's evaluation between the runs of a sweep.

Every run of a K / lambda / beta / seed grid evaluates the same starting checkpoint with the same seeded test
sampling, so the result is the same each time (minutes per run at CPU scale, hours at the paper's 4,608
prompts). The first run stores its evaluation folder under a key made of everything that decides the result:
the policy's and the reward's settings (files they name, with their modification times), the checkpoint, the
evaluator's settings and the prompts and references themselves. Later runs copy it into their own folder, so
every run folder stays complete on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from raft.atomic import atomic_dir, is_complete


def describe(obj: Any) -> dict:
    """An object's type and its plain settings (JSON values; existing paths with their modification time)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.asdict(obj)
    else:
        fields = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    out: dict[str, Any] = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    training_only = set(getattr(type(obj), "TRAINING_ONLY", ()))  # settings that cannot change an evaluation
    for key, value in sorted(fields.items()):
        if key in training_only:
            continue
        value = str(value) if isinstance(value, Path) or type(value).__name__ == "device" else value
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # loaded models, analysers, generators: their settings are the plain fields
        out[key] = value
        if isinstance(value, str) and value and Path(value).exists():
            out[f"{key}@mtime"] = Path(value).stat().st_mtime_ns
    return out


def evaluation_key(policy, checkpoint: Path | None, reward, evaluator_settings: dict, prompts, references) -> str:
    checkpoint_id = (
        None if checkpoint is None else [str(Path(checkpoint).resolve()), Path(checkpoint).stat().st_mtime_ns]
    )
    payload = {
        "policy": describe(policy),
        "checkpoint": checkpoint_id,
        "reward": describe(reward),
        "evaluator": evaluator_settings,
        "prompts": list(prompts),
        "references": references,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def restore(cache_dir: Path, key: str, out_dir: Path) -> bool:
    """Copy a stored evaluation into out_dir; False when there is none."""
    entry = Path(cache_dir) / key
    if not is_complete(entry):
        return False
    shutil.copytree(entry, out_dir, dirs_exist_ok=True)
    return True


def store(cache_dir: Path, key: str, out_dir: Path) -> None:
    entry = Path(cache_dir) / key
    if entry.exists():  # another run of the sweep stored it first
        return
    with atomic_dir(entry) as tmp:
        shutil.copytree(out_dir, tmp, dirs_exist_ok=True)
