"""OmegaConf resolvers used by raft's configs. Imported before Hydra composes anything."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import raft.cli.schemas  # noqa: F401  (registers the config schemas: whatever composes raft's configs imports this)

ASSETS = Path(__file__).resolve().parent.parent / "data" / "assets"


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
    digest = "-" + hashlib.sha1(overrides.encode()).hexdigest()[:10]
    if len(name) > 120:  # long override lists keep a readable head and a hash of the whole
        return name[:100] + digest
    if name != overrides:  # characters were replaced: the hash keeps 'a b' and 'a_b' in different folders
        return name + digest
    return name


def run_name(name: str) -> str:
    """`${raft_name:${name}}`: the run's name as one folder under outputs/, never a path that leaves it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", str(name)) or ".." in str(name):
        raise ValueError(f"name={name!r} must be one folder name (letters, digits, '_', '.', '+', '-'; no '/', '..')")
    return str(name)


def with_keys(node: DictConfig, changes: DictConfig) -> DictConfig:
    """`${raft_with:${trainer},{max_epochs:1}}`: a copy of a config node with some keys set, for a stage that
    needs one setting of a shared group differently (and says so in the composed config)."""
    return OmegaConf.merge(node, changes)


def if_native_bf16(native, otherwise):
    """`${raft_if_native_bf16:bf16-mixed,32-true}`: the first value where this process's device does bf16 in
    hardware (raft/infra/devices.py `native_bf16`), else the second: bf16 defaults that do not slow down a laptop."""
    from raft.infra.devices import native_bf16

    return native if native_bf16() else otherwise


def register() -> None:
    if not OmegaConf.has_resolver("raft_dirname"):
        OmegaConf.register_new_resolver("raft_dirname", run_dirname)
    if not OmegaConf.has_resolver("raft_asset"):
        OmegaConf.register_new_resolver("raft_asset", asset_path)
    if not OmegaConf.has_resolver("raft_name"):
        OmegaConf.register_new_resolver("raft_name", run_name)
    if not OmegaConf.has_resolver("raft_with"):
        OmegaConf.register_new_resolver("raft_with", with_keys)
    if not OmegaConf.has_resolver("raft_if_native_bf16"):
        # the hardware does not change within a process: probe it once, not at every access of the key
        OmegaConf.register_new_resolver("raft_if_native_bf16", if_native_bf16, use_cache=True)


register()
