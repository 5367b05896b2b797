"""Find run folders under a path, read what each one wrote, and group the runs by configuration.

A run folder holds metrics.csv and/or evaluation.json, plus Hydra's .hydra/config.yaml and
.hydra/overrides.yaml. Runs that differ only in their seed form one group (one table row, one line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from raft.infra import strict_json
from raft.trackers.tracking import read_metrics_csv


@dataclass
class Run:
    path: Path
    settings: dict[str, str]  # what defines its configuration: overrides (or the flat config) without the seed
    seed: str | None
    model: str  # the starting checkpoint, to group the "before" evaluations
    rows: list[dict[str, float]]  # metrics.csv, as numbers (NaN for empty cells)
    before: dict[str, float] | None
    after: dict[str, float] | None
    after_source: str  # "evaluation.json", "metrics.csv" or "training reward"
    best: dict[str, float] | None = None  # the evaluated stage with the highest held-out reward (section 4.2)


@dataclass
class Group:
    label: str
    settings: dict[str, str]
    runs: list[Run] = field(default_factory=list)


def _is_seed(key: str) -> bool:
    return key.split(".")[-1] == "seed"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(node) if isinstance(node, (list, type(None))) else str(node)}


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


def _parse_overrides(overrides: list[str]) -> dict[str, str]:
    parsed = {}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra"):
            parsed[key] = value
    return parsed


def hydra_home(path: Path, root: Path) -> Path:
    """The folder whose .hydra/ describes `path`: itself, or the pipeline run it is a stage of."""
    for folder in (path, *path.parents):
        if (folder / ".hydra").is_dir() or folder == root:
            return folder
    return path


def _resolved(config: Any, key: str) -> str | None:
    """A value of the saved config with its plain interpolations (${name}) resolved where possible."""
    if not isinstance(config, dict):
        return None
    node = OmegaConf.create(config)
    try:
        value = OmegaConf.select(node, key)
    except Exception:  # e.g. ${hydra:...}, which only resolves inside a Hydra run
        value = OmegaConf.select(node, key, throw_on_resolution_failure=False)
    return None if value is None else str(value)


def read_run(path: Path, root: Path | None = None) -> Run:
    home = hydra_home(path, root or path)
    config = _read_yaml(home / ".hydra" / "config.yaml") or {}
    overrides = _read_yaml(home / ".hydra" / "overrides.yaml")
    flat_config = _flatten(config) if isinstance(config, dict) else {}
    chosen = _parse_overrides(overrides) if overrides is not None else flat_config
    if home != path:  # a pipeline stage (raft/, ppo/): the stage is part of its configuration
        chosen = {"stage": path.relative_to(home).as_posix(), **chosen}
    # `seeds` only sizes the sweep (seeds=2, then seeds=3 adds one run): not part of a configuration
    settings = {k: v for k, v in chosen.items() if not _is_seed(k) and k != "seeds"}
    seed = next((v for k, v in chosen.items() if _is_seed(k)), flat_config.get("seed"))
    stage = f"task.stages.{chosen['stage']}." if "stage" in chosen else "task."
    start = _resolved(config, stage + "init_checkpoint")  # e.g. a pipeline's SFT checkpoint
    model = start or _resolved(config, "model.name_or_path") or chosen.get("model") or "initial model"

    rows = [{k: _number(v) for k, v in row.items()} for row in read_metrics_csv(path / "metrics.csv")]
    evaluation = (
        strict_json.loads_numbers((path / "evaluation.json").read_text()) if (path / "evaluation.json").exists() else {}
    )
    before, after = evaluation.get("before") or None, evaluation.get("after") or None
    source = "evaluation.json"
    if after is None and rows:
        last = rows[-1]
        after = {k[len("eval_") :]: v for k, v in last.items() if k.startswith("eval_")}
        source = "metrics.csv"
        if not math.isfinite(after.get("reward", math.nan)):
            after["reward"] = last.get("policy_reward", math.nan)
            source = "training reward"
    first = next((row for row in rows if row.get("iteration") == 0), {})
    if after is not None and math.isfinite(first.get("best_of_k_reward", math.nan)):
        after = {**after, "initial_best_of_k": first["best_of_k_reward"]}
    if after is not None and rows and math.isfinite(rows[-1].get("capped_share", math.nan)):
        after = {**after, "capped_share": rows[-1]["capped_share"]}
    return Run(path, settings, seed, model, rows, before, after, source, best_stage(rows))


def best_stage(rows: list[dict[str, float]]) -> dict[str, float] | None:
    """The held-out evaluation of the stage with the highest held-out reward, and which stage it was.

    The paper reports this stage ("we stop when the best model is obtained"); picked on the evaluated
    prompts themselves, it is an optimistic number beside the last stage's.
    """
    evaluated = [row for row in rows if math.isfinite(row.get("eval_reward", math.nan))]
    if not evaluated:
        return None
    top = max(evaluated, key=lambda row: row["eval_reward"])
    return {
        **{k[len("eval_") :]: v for k, v in top.items() if k.startswith("eval_")},
        "stage": top["iteration"],
        **({"capped_share": top["capped_share"]} if "capped_share" in top else {}),
    }


def find_runs(root: str | Path) -> list[Run]:
    """Every folder under root (root included) with metrics.csv or evaluation.json, outside hidden folders."""
    root = Path(root)
    folders = {p.parent for name in ("metrics.csv", "evaluation.json") for p in root.rglob(name)}
    visible = [f for f in folders if not any(part.startswith(".") for part in f.relative_to(root).parts)]
    return [read_run(f, root) for f in sorted(visible)]


def _natural(value: str | None) -> tuple:
    """Sort 8 before 16 and numbers before words."""
    if value is None:
        return (0, 0.0, "")
    number = _number(value)
    return (1, number, "") if math.isfinite(number) else (2, 0.0, value)


def differing_keys(runs: list[Run]) -> list[str]:
    keys = list(dict.fromkeys(k for run in runs for k in run.settings))
    return [k for k in keys if len({run.settings.get(k) for run in runs}) > 1]


def group_runs(runs: list[Run]) -> list[Group]:
    """One group per configuration (seed ignored), labelled by the settings that differ between groups."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = tuple(sorted(run.settings.items()))
        groups.setdefault(key, Group("", dict(run.settings))).runs.append(run)
    varying = differing_keys(runs)
    for group in groups.values():
        if varying:
            group.label = ", ".join(f"{k}={group.settings.get(k, 'default')}" for k in varying)
        elif 0 < len(group.settings) <= 4:  # one configuration: its few overrides say what it is
            group.label = ", ".join(f"{k}={v}" for k, v in group.settings.items())
        else:
            group.label = group.runs[0].path.name
    return sorted(groups.values(), key=lambda g: [_natural(g.settings.get(k)) for k in varying] + [g.label])
