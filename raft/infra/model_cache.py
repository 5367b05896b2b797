"""Where raft keeps converted and generated model folders: outside the repository, reused across runs."""

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RAFT_CACHE") or Path.home() / ".cache" / "raft")  # set but empty: the default
