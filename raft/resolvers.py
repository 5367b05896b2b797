"""OmegaConf resolvers used by raft's configs. Imported before Hydra composes anything."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

ASSETS = Path(__file__).resolve().parent / "assets"


def asset_path(name: str) -> str:
    """`${raft_asset:hh_rlhf/harmless-base.jsonl.gz}`: a file shipped in raft/assets, wherever raft is installed."""
    path = ASSETS / name
    if not path.is_file():
        raise ValueError(f"raft ships no asset {name!r} (looked in {ASSETS})")
    return str(path)


def run_dirname(overrides: str) -> str:
    """A folder name from a command's overrides: readable, filesystem-safe, bounded, deterministic."""
    if not overrides:
        return "default"
    name = re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", overrides).strip("_")
    if len(name) > 120:  # long override lists keep a readable head and a hash of the whole
        name = name[:100] + "-" + hashlib.sha1(overrides.encode()).hexdigest()[:10]
    return name


def with_keys(node: DictConfig, changes: DictConfig) -> DictConfig:
    """`${raft_with:${trainer},{max_epochs:1}}`: a copy of a config node with some keys set, for a stage that
    needs one setting of a shared group differently (and says so in the composed config)."""
    return OmegaConf.merge(node, changes)


def register() -> None:
    if not OmegaConf.has_resolver("raft_dirname"):
        OmegaConf.register_new_resolver("raft_dirname", run_dirname)
    if not OmegaConf.has_resolver("raft_asset"):
        OmegaConf.register_new_resolver("raft_asset", asset_path)
    if not OmegaConf.has_resolver("raft_with"):
        OmegaConf.register_new_resolver("raft_with", with_keys)


register()
