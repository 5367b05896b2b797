"""Outputs others can read and parse: files with the permissions the user's umask gives any new file (not
mkstemp's 0600), and strict JSON (null, not NaN or Infinity, which strict readers reject)."""

from __future__ import annotations

import os
import stat

import pytest
from PIL import Image

from raft.atomic import atomic_dir, atomic_write_text
from raft.images import save_png
from raft.tracking import Tracker


@pytest.fixture(params=[0o022, 0o027], ids=["umask_022", "umask_027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_get_the_umasks_permissions(tmp_path, umask):
    atomic_write_text(tmp_path / "evaluation.json", "{}")
    with atomic_dir(tmp_path / "checkpoint") as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
    save_png(Image.new("RGB", (2, 2)), tmp_path / "sample.png")
    tracker = Tracker(tmp_path / "run")
    tracker.log_iteration({"iteration": 0, "policy_reward": 0.5})
    tracker.close()

    files = ["evaluation.json", "checkpoint/model.safetensors", "checkpoint/MANIFEST.json", "sample.png"]
    files += ["run/metrics.csv", "run/tracking_step.txt"]
    assert {f: oct(mode(tmp_path / f)) for f in files} == {f: oct(0o666 & ~umask) for f in files}
    assert oct(mode(tmp_path / "checkpoint")) == oct(0o777 & ~umask)
