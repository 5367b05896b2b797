"""The run's tracking, fed from one place: metrics.csv (always), the fine-tuning curves of every stage, and the
chosen trackers (`logger.backends`: W&B, TensorBoard, MLflow; raft/trackers/).

metrics.csv is rewritten whole (atomically) from all rows at every iteration, so a resumed run keeps the rows
of its earlier life. Each stage's Lightning Trainer gets a logger that brings its curves here (`trainer`); they
go to `train_steps.csv` and the trackers on the run's step axis, which continues across stages and across
restarts (`tracking_step.txt` holds the next free step), so no tracker ever sees a step twice. A tracker that
cannot start or fails later is dropped with one warning: tracking never ends a run.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from raft.infra import strict_json
from raft.infra.atomic import atomic_write_text, temporary_beside
from raft.sampling.samples import Sample
from raft.trackers.sample_rows import stage_rows
from raft.trackers.stage_logger import StageCurves, StageLogger
from raft.trainer.new_trainer import bound_copy, new_trainer

log = logging.getLogger("raft")

# Column order of metrics.csv (docs/design.md: the run folder); other keys follow in the order they first appear.
COLUMNS = [
    "iteration",
    "policy_reward",
    "best_of_k_reward",
    "teacher_reward",
    "teacher_best_of_k_reward",
    "selected_reward",
    "selected_distinct_2",
    "selected_msttr_100",
    "selected_length",
    "selected_duplicate_share",
    "capped_share",
    "selected_capped_share",
    "kl",
    "eval_reward",
    "eval_ppl",
    "eval_msttr_100",
    "eval_distinct_1",
    "eval_distinct_2",
    "eval_unique_1",
    "eval_unique_2",
    "eval_length",
    "eval_n",
    "eval_best_of_k_reward",
    "wall_time_s",
]


def read_metrics_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class Tracker:
    def __init__(
        self, run_dir: str | Path, backends: Mapping[str, Callable[..., Any] | None] | None = None, table_rows: int = 32
    ):
        self.check_arguments(locals())
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = self._derived_rows()  # earlier life of a resumed run
        if list(self.run_dir.glob("iter_*/metrics.json")):
            self._write_csv()  # a run killed between metrics.json and the CSV gets its row back now
        self.table_rows = table_rows
        self.step_path, self.steps_csv = self.run_dir / "tracking_step.txt", self.run_dir / "train_steps.csv"
        self.next_step = int(self.step_path.read_text()) if self.step_path.exists() else 0
        self.backends: dict[str, Any] = {}
        for name, make in (backends or {}).items():
            if make is not None:  # logger.backends.<name>=null switches one off
                self._start(name, make)

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The settings' rules, the backends' included, also run before any model loads (raft/trainer/checks.py)."""
        from raft.trainer.checks import check_partial

        if a["table_rows"] < 0:
            raise ValueError(f"logger.table_rows must be >= 0, got {a['table_rows']}")
        for name, make in (a["backends"] or {}).items():
            check_partial(make, f"logger.backends.{name}")

    # -- the loop's interface ------------------------------------------------------------------
    def trainer(self, make_trainer: Callable[..., Any], iteration: int) -> Callable[..., Any]:
        """`make_trainer` (a stage's Trainer partial) with a logger that brings the stage's curves here and
        a callback that logs learning rate and gradient norm; the trainer's own callbacks are kept."""

        def build(**kwargs: Any) -> Any:
            own = list(bound_copy(make_trainer, "callbacks") or [])  # copies: see raft/trainer/new_trainer.py
            callbacks = [*own, *kwargs.pop("callbacks", []), StageCurves()]
            logger = StageLogger(self, iteration, self.next_step)
            return new_trainer(make_trainer, **kwargs, logger=logger, callbacks=callbacks)

        return build

    def log_steps(self, metrics: Mapping[str, float], step: int, iteration: int) -> None:
        """One step of a fine-tuning stage (from its StageLogger), `step` on the run's axis."""
        self._save_step(max(self.next_step, step + 1))
        try:
            self._append_steps(metrics, step, iteration)
        except OSError as e:
            log.warning("could not append to %s (%s)", self.steps_csv, e)
        self._each("log_steps", numbers(metrics), step, iteration)

    def log_iteration(self, metrics: Mapping[str, Any], samples: Sequence[Sample] | None = None) -> None:
        iteration = int(metrics["iteration"])
        self.rows = self._derived_rows({iteration: dict(metrics)})
        self._write_csv()
        step = self._take_step()  # whichever trackers there are, so a resume may add one without a step clash
        if not self.backends:
            return
        try:
            rows = stage_rows(self.run_dir / f"iter_{iteration:03d}", iteration, samples or [], self.table_rows)
        except (OSError, ValueError) as e:
            log.warning("no sample table for iteration %d (%s)", iteration, e)
            rows = []
        self._each("log_iteration", numbers(metrics), step, rows)

    def close(self) -> None:
        """The run's figures (`*.png` of the run folder) and before/after evaluation, then each tracker's end."""
        step = self._take_step()
        if self.backends:
            evaluation = {}
            try:
                evaluation = strict_json.loads_numbers((self.run_dir / "evaluation.json").read_text())
            except (OSError, ValueError):
                pass
            self._each("log_end", step, sorted(self.run_dir.glob("*.png")), evaluation)
        self._each("close")
        self.backends = {}

    # -- trackers ------------------------------------------------------------------------------
    def _start(self, name: str, make: Callable[..., Any]) -> None:
        try:  # its settings passed check_arguments: whatever fails now is the tracker's, not the run's
            self.backends[name] = make(run_dir=self.run_dir)
        except ImportError as e:
            extra = getattr(getattr(make, "func", make), "extra", name)
            log.warning(
                "logger %s needs a package that is not installed (%s): pip install 'raft-align[%s]'", name, e, extra
            )
        except Exception as e:
            log.warning("logger %s could not start (%s: %s); logging to metrics.csv", name, type(e).__name__, e)

    def _each(self, method: str, *args: Any) -> None:
        for name, backend in list(self.backends.items()):
            try:
                getattr(backend, method)(*args)
            except Exception as e:  # tracking must never end a run
                log.warning(
                    "logger %s disabled after an error (%s: %s); metrics.csv goes on", name, type(e).__name__, e
                )
                del self.backends[name]

    # -- the run's step axis -------------------------------------------------------------------
    def _take_step(self) -> int:
        step = self.next_step
        self._save_step(step + 1)
        return step

    def _save_step(self, next_step: int) -> None:
        """Kept at every step (no fsync: it must survive a killed process, not a power cut, and cost nothing)."""
        if next_step == self.next_step and self.step_path.exists():
            return
        self.next_step = next_step
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = temporary_beside(self.step_path)
            with os.fdopen(fd, "w") as f:
                f.write(str(next_step))
            os.replace(tmp, self.step_path)
        except OSError as e:
            log.warning("could not keep the tracking step in %s (%s)", self.step_path, e)

    def _append_steps(self, metrics: Mapping[str, float], step: int, iteration: int) -> None:
        new = not self.steps_csv.exists()
        with open(self.steps_csv, "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            if new:
                writer.writerow(["step", "iteration", "metric", "value"])
            writer.writerows([step, iteration, k, v] for k, v in metrics.items())

    # -- CSV -----------------------------------------------------------------------------------
    def _derived_rows(self, latest: Mapping[int, dict] | None = None) -> list[dict[str, Any]]:
        """The CSV's rows rebuilt from what the run wrote: the finished iterations' metrics.json files (the
        source of truth), the rows already in metrics.csv for anything else, and the row being logged."""
        rows = {int(float(r["iteration"])): r for r in read_metrics_csv(self.csv_path)}
        for path in self.run_dir.glob("iter_*/metrics.json"):
            try:
                metrics = strict_json.loads_numbers(path.read_text())
                rows[int(metrics["iteration"])] = metrics
            except (OSError, ValueError, KeyError):
                continue  # not a finished iteration's record
        rows.update(latest or {})
        return [rows[t] for t in sorted(rows)]

    def _write_csv(self) -> None:
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        columns = [c for c in COLUMNS if c in keys] + [k for k in keys if k not in COLUMNS]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv_path, out.getvalue())


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """What a tracker can draw: the finite-or-not numbers (NaN = not measured, left out), no flags or text."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))
    }
