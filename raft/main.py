"""The Hydra application: compose the config, build the task from it, run it."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig

import raft.resolvers  # noqa: F401  (registers resolvers before Hydra composes)
from raft.distributed import is_rank_zero
from raft.run_folder import claim

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def build_task(cfg: DictConfig):
    """Instantiate `cfg.task`; constructors validate, so bad input fails here, before any model loads."""
    try:
        return hydra.utils.instantiate(cfg.task, _convert_="all")
    except InstantiationException as error:
        root = error
        while root.__cause__ is not None:
            root = root.__cause__
        raise ConfigError(str(root).splitlines()[0] if str(root) else repr(root)) from error


class ConfigError(ValueError):
    """A bad configuration value, reported as one line."""


def quiet_lightning() -> None:
    """Keep the console for raft's progress: Lightning sets its loggers to INFO when imported."""
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of a deprecated torch API


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig):
    try:
        task = build_task(cfg)
        if is_rank_zero():  # the other ranks of a torchrun launch share rank 0's folder
            claim(Path(HydraConfig.get().runtime.output_dir), cfg, bool(cfg.get("allow_changed_config")))
    except (ConfigError, ValueError) as error:
        print(f"raft: error: {error}", file=sys.stderr)
        sys.exit(2)
    quiet_lightning()
    result = task.run()
    return objective(result, cfg.get("objective"))


def objective(result, path: str | None):
    """The float a sweeper optimises (`objective: after.reward`), or the whole result when none is set."""
    if not path or result == {}:  # {}: a rank other than 0 of a multi-GPU launch reports nothing
        return result
    value = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"objective={path!r}: the task's result has no {key!r}")
        value = value[key]
    return float(value)
