"""The Hydra application: compose the config, build the task from it, run it."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import raft.cli.resolvers  # noqa: F401  (registers resolvers before Hydra composes)
from raft.evaluation.monitor import RewardHackingDetected
from raft.infra.distributed import is_rank_zero
from raft.infra.errors import StageError
from raft.tasks.run_folder import claim
from raft.trainer.fit import NonFiniteLoss, TrainingInterrupted

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # inside the package: a wheel carries it


def build_task(cfg: DictConfig):
    """Instantiate `cfg.task`; constructors validate, so bad input fails here, before any model loads."""
    missing = missing_values(cfg)
    if missing:
        raise ConfigError(
            f"no value given for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=<value>"
        )
    check_interpolations(cfg)
    try:
        return hydra.utils.instantiate(cfg.task, _convert_="all")
    except (InstantiationException, OmegaConfBaseException) as error:
        root = error
        while root.__cause__ is not None:
            root = root.__cause__
        key = getattr(root, "full_key", None)  # where OmegaConf failed (an interpolation, a type)
        text = str(root).splitlines()[0] if str(root) else repr(root)
        raise ConfigError(f"{key}: {text}" if key else text) from error


def check_interpolations(cfg: DictConfig) -> None:
    """Resolve each top-level key on its own, so a bad interpolation is named where it is written."""
    for key in cfg:
        if key == "hydra":
            continue
        try:
            value = cfg[key]  # a scalar resolves here, a group below
            if OmegaConf.is_config(value):
                OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as error:
            raise ConfigError(f"{error.full_key}: {str(error).splitlines()[0]}") from None


def missing_values(cfg: DictConfig) -> list[str]:
    """Dotted keys still at `???` (a config's mandatory value nobody set), outside Hydra's own node."""
    found: list[str] = []

    def walk(node, path: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if value == "???":
                found.append(f"{path}{key}")
            else:
                walk(value, f"{path}{key}.")

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}, "")
    return found


class ConfigError(ValueError):
    """A bad configuration value, reported as one line."""


def quiet_lightning() -> None:
    """Keep the console for raft's progress: Lightning sets its loggers to INFO when imported; loading a model or a
    data file draws no bars (raft.infra.progress)."""
    import pytorch_lightning  # noqa: F401

    from raft.infra.progress import quiet_loading

    quiet_loading()

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of a deprecated torch API


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig):
    quiet_lightning()  # before the up-front checks, which build a Trainer once
    try:
        task = build_task(cfg)
        if is_rank_zero():  # the other ranks of a torchrun launch share rank 0's folder
            claim(Path(HydraConfig.get().runtime.output_dir), cfg, bool(cfg.get("allow_changed_config")))
    except (ConfigError, ValueError) as error:
        print(f"raft: error: {error}", file=sys.stderr)
        sys.exit(2)
    result = run_to_the_end(task, Path(HydraConfig.get().runtime.output_dir))
    return objective(result, cfg.get("objective"))


def run_to_the_end(task, run_dir: Path) -> dict:
    """The task's result; raft's own mid-run stops and Ctrl-C as one line that says the same command resumes.
    Anything else (a user's reward that raises, say) keeps its traceback."""
    resume = f"the finished stages are kept in {run_dir}: run the same command again to resume"
    try:
        return task.run()
    except KeyboardInterrupt:
        print(f"\nraft: stopped (Ctrl-C); {resume}", file=sys.stderr)
        sys.exit(130)
    except (StageError, NonFiniteLoss, TrainingInterrupted, RewardHackingDetected) as error:
        print(f"raft: stopped: {str(error).strip().splitlines()[0]}; {resume} once the cause is fixed", file=sys.stderr)
        sys.exit(1)


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
