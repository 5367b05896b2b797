"""`raft report PATH --wandb`: the report's table and figures attached to the sweep's W&B group, so the
paper-style table sits next to the runs' curves: one run of job type `report` in that group, with the table
as a W&B table, the figures as images, and every written file in a `report` artifact."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from raft.trackers.wandb_mode import chosen_mode


def wandb_home(run_folders: Sequence[Path], fallback: str) -> dict[str, Any]:
    """Project, entity and group the runs logged to (their `logger=wandb` settings, else the defaults that
    logger would have used: project `raft`, the group named after the preset)."""
    for folder in run_folders:
        path = Path(folder) / ".hydra" / "config.yaml"
        if path.exists():
            cfg = OmegaConf.load(path)
            wandb = OmegaConf.select(cfg, "logger.backends.wandb", default=None, throw_on_missing=False) or {}
            group = (
                wandb.get("group") if isinstance(wandb.get("group"), str) and "${" not in wandb.get("group") else None
            )
            return {
                "project": wandb.get("project") or "raft",
                "entity": wandb.get("entity"),
                "group": group or cfg.get("name") or fallback,
            }
    return {"project": "raft", "entity": None, "group": fallback}


def publish(out: Path, run_folders: Sequence[Path], files: Sequence[str]) -> str:
    """Upload (or, without credentials, keep offline for `wandb sync`) the report in `out`; returns the group."""
    import wandb

    home = wandb_home(run_folders, Path(out).parent.name)
    run = wandb.init(
        **home,
        job_type="report",
        name=f"report-{home['group']}",
        dir=None if os.environ.get("WANDB_DIR") else str(out),
        mode=chosen_mode(None),
        config={"runs": len(run_folders)},
    )
    try:
        with open(Path(out) / "results.csv", newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        figures = sorted(Path(out).glob("*.png"))
        run.log({"report/results": wandb.Table(columns=header, data=rows)})
        run.log({f"report/{p.stem}": wandb.Image(str(p)) for p in figures})
        artifact = wandb.Artifact(f"report-{home['group']}", type="report")
        for name in [*files, *(p.name for p in figures)]:
            artifact.add_file(str(Path(out) / name))
        run.log_artifact(artifact)
    finally:
        run.finish()
        wandb.teardown()
    return home["group"]
