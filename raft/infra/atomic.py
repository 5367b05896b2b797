"""Atomic writes: a stage's output either exists whole or not at all, so a killed run resumes cleanly.

Files and folders are fsynced before they are renamed into place, and the parent folder after, so a
power cut cannot leave a renamed but empty file. A folder written by `atomic_dir` carries a manifest of
its files and sizes (and each safetensors file's header); `is_complete` checks it, so a resumed run
redoes a stage whose weights were truncated or damaged instead of trusting the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from raft.infra import strict_json
from raft.infra.faults import reach

MANIFEST = "MANIFEST.json"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_beside(path: Path) -> tuple[int, Path]:
    """A new, open temporary file next to `path` with the permissions a plain `open` gives (the umask's, not
    mkstemp's 0600), so a shared project folder's readers can read what raft writes."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        reach("inside", path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    reach("after", path)


def safetensors_header(path: Path) -> str | None:
    """A hash of a safetensors file's header (tensor names, shapes, offsets); None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > path.stat().st_size - 8:
                return None  # not a safetensors header (or a cut one): never read more than the file holds
            header = f.read(size)
        if len(header) != size:
            return None
        offsets = [
            end
            for meta in json.loads(header).values()
            if isinstance(meta, dict)
            for end in meta.get("data_offsets", [])[1:]
        ]
        if 8 + size + max(offsets, default=0) != path.stat().st_size:
            return None  # the header promises more (or fewer) bytes than the file has
    except (OSError, ValueError, struct.error):
        return None
    return hashlib.sha256(header).hexdigest()[:16]


def manifest_of(folder: Path) -> dict:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        entry = {"size": path.stat().st_size}
        if path.suffix == ".safetensors":
            entry["header"] = safetensors_header(path)
        files[path.relative_to(folder).as_posix()] = entry
    return {"files": files}


def is_complete(folder: Path) -> bool:
    """Whether `folder` was finished by atomic_dir and still holds exactly what its manifest lists."""
    folder = Path(folder)
    try:
        recorded = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest_of(folder) == recorded


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a scratch folder that becomes `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed earlier attempt's scratch
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / MANIFEST).write_text(strict_json.dumps(manifest_of(tmp), indent=1))
    for file in [p for p in tmp.rglob("*") if p.is_file()] + [tmp]:
        _fsync(file)
    reach("inside", path)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    _fsync(path.parent)
    reach("after", path)


def check_checkpoint(path: Path, field: str) -> None:
    """A checkpoint to start from must be there, whole: a folder raft wrote carries a manifest that must hold."""
    if not path.is_dir():
        raise ValueError(f"{field}='{path}' does not exist (or is not a folder)")
    if (path / MANIFEST).exists() and not is_complete(path):
        raise ValueError(f"{field}='{path}' fails its manifest check (a truncated or changed file)")
    if not any(path.iterdir()):
        raise ValueError(f"{field}='{path}' is empty")
