"""The run's one Weights & Biases run: fine-tuning curves on `trainer/global_step`, iteration metrics on
`iteration`, a sample table that grows across iterations, images of image runs, the figures at the end.

Every `log` passes the run's own step (raft/trackers/tracking.py keeps it across restarts), so a resumed run, also an
offline one synced later, continues the same W&B run without repeating a step. Without an API key the run is
offline (raft/trackers/wandb_mode.py; `wandb sync` uploads it later); an online start that fails is retried offline.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from raft.infra.atomic import atomic_write_text
from raft.trackers.run_config import run_config
from raft.trackers.sample_rows import COLUMNS, SampleRow
from raft.trackers.wandb_mode import chosen_mode

log = logging.getLogger("raft")

STEP, ITERATION, STAGE = "trainer/global_step", "iteration", "trainer/iteration"


class WandbRun:
    def __init__(
        self,
        run_dir: str | Path,
        project: str = "raft",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: str | None = None,
        init_timeout: float = 30.0,
    ):
        self.check_arguments(locals())
        import wandb  # ImportError: the tracker says what to install and goes on without W&B

        self.run_dir = Path(run_dir)
        mode = chosen_mode(mode)
        kwargs = dict(
            project=project,
            entity=entity,
            name=name or display_name(self.run_dir),
            group=group,
            tags=list(tags),
            id=self.run_id(),
            resume="allow",
            config=run_config(self.run_dir),
            dir=None if os.environ.get("WANDB_DIR") else str(self.run_dir),
            settings=wandb.Settings(init_timeout=init_timeout),
        )
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as e:
            if mode == "offline":
                raise
            log.warning("W&B init failed (%s); retrying offline", e)
            wandb.teardown()  # the failed start still holds the run id in W&B service
            self.run = wandb.init(mode="offline", **kwargs)
        say_where(self.run)
        self.run.define_metric(STEP)
        self.run.define_metric(ITERATION)
        self.run.define_metric(STAGE, step_metric=STEP)
        self.axis_of: dict[str, str] = {}  # each key on the axis it first came with
        self.table: Any = None

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The settings' rules, also run before any model loads (raft/trainer/checks.py)."""
        if a["mode"] not in (None, "online", "offline", "disabled"):
            raise ValueError(f"wandb.mode must be online, offline, disabled or null, got {a['mode']!r}")
        if a["init_timeout"] <= 0:
            raise ValueError(f"wandb.init_timeout must be > 0 seconds, got {a['init_timeout']}")

    def run_id(self) -> str:
        """One W&B run per run folder, so a resumed run continues the same W&B run."""
        path = self.run_dir / "wandb_run_id.txt"
        if not path.exists():
            atomic_write_text(path, uuid.uuid4().hex[:12])
        return path.read_text().strip()

    def log_steps(self, metrics: Mapping[str, float], step: int, iteration: int) -> None:
        self._define(metrics, STEP)
        self.run.log({**metrics, STEP: step, STAGE: iteration}, step=step)  # STAGE: to tell the stages apart

    def log_iteration(self, metrics: Mapping[str, float], step: int, rows: Sequence[SampleRow]) -> None:
        import wandb

        self._define(metrics, ITERATION)
        data: dict[str, Any] = dict(metrics)
        if rows:
            data["samples"] = self.add_rows(rows)
            images = [
                wandb.Image(str(r.image), caption=f"reward {r.reward:.3f}")
                for r in rows
                if r.image and r.selected and r.reward is not None
            ]
            if images:
                data["selected_images"] = images
        self.run.log(data, step=step)

    def add_rows(self, rows: Sequence[SampleRow]) -> Any:
        """One table for the whole run (W&B's incremental mode: each log uploads only the new rows)."""
        import wandb

        with_images = any(r.image for r in rows)
        if self.table is None:
            columns = COLUMNS + (["image"] if with_images else [])
            self.table = wandb.Table(columns=columns, log_mode="INCREMENTAL")
        has_image_column = "image" in self.table.columns
        for r in rows:
            image = [wandb.Image(str(r.image)) if r.image else None] if has_image_column else []
            self.table.add_data(*r.values(), *image)
        return self.table

    def log_end(self, step: int, figures: Sequence[Path], evaluation: Mapping[str, Mapping[str, Any]]) -> None:
        import wandb

        if figures:
            self.run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}, step=step)
        for key, value in flat(evaluation).items():  # before/..., after/...: parallel coordinates against K, λ, β
            self.run.summary[key] = value

    def close(self) -> None:
        import wandb

        self.run.finish()
        wandb.teardown()  # waits until the run's files are written (finish alone may return before)

    def _define(self, data: Mapping[str, Any], axis: str) -> None:
        for key in data:
            if key not in self.axis_of and key not in (STEP, ITERATION, STAGE):
                self.axis_of[key] = axis
                self.run.define_metric(key, step_metric=axis)


def say_where(run: Any) -> None:
    if run.offline:
        folder = Path(run.dir).parent
        log.info("W&B run offline (no API key found: `wandb login` to go online); upload it: wandb sync %s", folder)
    elif not run.disabled:
        log.info("W&B run online: %s", run.url)


def display_name(run_dir: Path) -> str:
    """The run folder's name (its overrides); a pipeline stage's folder (no `.hydra` of its own) after its run's."""
    return run_dir.name if (run_dir / ".hydra").exists() else f"{run_dir.parent.name}/{run_dir.name}"


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numbers (an image run's split / score / statistic) as `a/b/c` keys."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:  # NaN: not measured
            out[f"{prefix}{key}"] = value
    return out
