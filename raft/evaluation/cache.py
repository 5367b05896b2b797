"""Share the starting model's evaluation between the runs of a sweep.

Every run of a K / lambda / beta / seed grid evaluates the same starting checkpoint with the same seeded test
sampling, so the result is the same each time (minutes per run at CPU scale, hours at the paper's 4,608
prompts). The first run stores its evaluation folder under a key made of everything that decides the result:
the policy's and the reward's settings, the code that defines them (the source file of each one's class, user
code and raft's alike: a reward whose file changed scores differently), the contents of the files and folders
their settings name (digests, never modification times: a copy keeps the key, an edit that keeps the time
does not), the checkpoint's contents, the evaluator's settings and the prompts and references themselves.
A reward's nested settings objects (exact match's problem set, i.e. the run's data) are described the same
way. Later runs copy the stored evaluation into their own folder, so every run folder stays complete on its own.

A changed key only costs one more evaluation, while a stale one silently reports another reward's scores, so
the key leans to changing: raft's own files count as well as a user's (the run fingerprint in run_folder.py
makes the same choice, for the file each reward and data config names, and explains it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import shutil
import types
from pathlib import Path
from typing import Any

from raft.infra.atomic import atomic_dir, is_complete


def describe(obj: Any, nested: bool = False) -> dict:
    """An object's type, the digest of the file that defines it and its plain settings (JSON values; paths to
    existing files or folders with a digest of their contents). `nested`: settings that are objects themselves
    (a reward's problem set) are described in turn, one level down; otherwise they are left out (loaded models,
    analysers, engines with their running state)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.asdict(obj)
    else:
        fields = {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    out: dict[str, Any] = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    code = code_digest(type(obj))
    if code is not None:
        out["type@code"] = code
    training_only = set(getattr(type(obj), "TRAINING_ONLY", ()))  # settings that cannot change an evaluation
    for key, value in sorted(fields.items()):
        if key in training_only:
            continue
        if isinstance(value, re.Pattern):  # a compiled setting (a pattern reward's regex): its pattern
            value = {"pattern": value.pattern, "flags": value.flags}
        value = str(value) if isinstance(value, Path) or type(value).__name__ == "device" else value
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            if nested and _is_settings_object(value):
                out[key] = describe(value)
            continue  # loaded models, analysers, generators: their settings are the plain fields
        out[key] = value
        digest = path_digest(value) if isinstance(value, str) else None
        if digest is not None:
            out[f"{key}@sha256"] = digest
    return out


def _is_settings_object(value: Any) -> bool:
    """An instance of a class with plain attributes (a data or problem set), not a function, class or module."""
    return hasattr(value, "__dict__") and not isinstance(value, (type, types.ModuleType, types.FunctionType))


def code_digest(target: Any) -> str | None:
    """sha256 of the source file that defines `target` (a class or function); None for built-in code.

    The whole file, so a helper beside the class that it calls counts too."""
    try:
        source = inspect.getsourcefile(target)
    except TypeError:  # built in, or made at run time without a file
        return None
    if source is None or not Path(source).is_file():
        return None
    return path_digest(source)


# Large files (model weights) are read once a process while they stay as they are: rewriting one changes its
# change time, which nothing sets back, and takes longer than that clock's tick. Small files (source code, data
# and settings files) are read every time: they are quick to read, and a rewrite may fall within one tick.
REMEMBERED_BYTES = 64 << 20
_digests: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    if key in _digests:
        return _digests[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if st.st_size >= REMEMBERED_BYTES:
        _digests[key] = h.hexdigest()
    return h.hexdigest()


def path_digest(value: str | Path) -> str | None:
    """sha256 of a file's bytes, or of a folder's files (relative names and contents); None when `value` names
    neither. A folder's files are all read: a model folder takes seconds a gigabyte, once a process."""
    try:
        path = Path(value).expanduser() if value else None
        if path is None or not path.exists():
            return None
        if path.is_file():
            return _file_digest(path)
        if not path.is_dir() or _too_broad(path):
            return None
        h = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{file.relative_to(path).as_posix()}\0{_file_digest(file)}\n".encode())
        return h.hexdigest()
    except (OSError, ValueError):  # unreadable, too long or not a path at all (a NUL): nothing to digest
        return None


def _too_broad(folder: Path) -> bool:
    """A setting such as "." or "/" names the working folder or one above it (or home): no data folder."""
    folder, cwd = folder.resolve(), Path.cwd().resolve()
    return folder == cwd or folder in cwd.parents or folder == Path.home().resolve()


def evaluation_key(policy, checkpoint: Path | None, reward, evaluator_settings: dict, prompts, references) -> str:
    checkpoint_id = None if checkpoint is None else [str(Path(checkpoint).resolve()), path_digest(checkpoint)]
    payload = {
        "policy": describe(policy),
        "checkpoint": checkpoint_id,
        "reward": describe(reward, nested=True),
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
