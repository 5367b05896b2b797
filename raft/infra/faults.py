"""Fault injection for raft's reliability tests: named points in every atomic write where a process can be killed.

`RAFT_KILL_AT=<when>:<path>` makes this process SIGKILL itself the first time a write of `path` reaches `when`:
`inside` (the data is complete under its temporary name, not yet renamed into place) or `after` (renamed and
synced). `RAFT_FAULT_LOG=<file>` appends every point reached, one per line, so a test can list a run's points and
then kill it at each. With neither set, a write pays two environment lookups.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def reach(when: str, path: Path) -> None:
    point = f"{when}:{Path(path).resolve()}"
    log = os.environ.get("RAFT_FAULT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(point + "\n")
    if os.environ.get("RAFT_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
