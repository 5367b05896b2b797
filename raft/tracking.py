"""Per-iteration tracking: metrics.csv in the run folder always, Weights & Biases optionally.

metrics.csv is rewritten whole (atomically) from all rows at every iteration, so a resumed run keeps
the rows of its earlier life. W&B is imported only when asked for, runs offline when there is no API
key or the service cannot be reached, and any W&B error only disables W&B (the CSV goes on).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from raft.atomic import atomic_write_text
from raft.samples import Sample

log = logging.getLogger("raft")

# Column order of ARCHITECTURE.md; other keys follow in the order they first appear.
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
        self,
        run_dir: str | Path,
        wandb: bool = False,
        project: str = "raft",
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: str | None = None,
        init_timeout: float = 30.0,
        table_rows: int = 32,
    ):
        self.check_arguments(locals())
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = self._derived_rows()  # earlier life of a resumed run
        if list(self.run_dir.glob("iter_*/metrics.json")):
            self._write_csv()  # a run killed between metrics.json and the CSV gets its row back now
        self.table_rows = table_rows
        self._wandb_run = None
        if wandb:
            self._wandb_run = self._start_wandb(
                project, entity, name or self.run_dir.name, group, list(tags), mode, init_timeout
            )

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The settings' rules, also run before any model loads (raft/validation.py)."""
        if a["mode"] not in (None, "online", "offline", "disabled"):
            raise ValueError(f"logger.mode must be online, offline, disabled or null, got {a['mode']!r}")
        if a["table_rows"] < 0:
            raise ValueError(f"logger.table_rows must be >= 0, got {a['table_rows']}")
        if a["init_timeout"] <= 0:
            raise ValueError(f"logger.init_timeout must be > 0 seconds, got {a['init_timeout']}")

    # -- the loop's interface ------------------------------------------------------------------
    def log_iteration(self, metrics: Mapping[str, Any], samples: Sequence[Sample] | None = None) -> None:
        iteration = int(metrics["iteration"])
        self.rows = self._derived_rows({iteration: dict(metrics)})
        self._write_csv()
        if self._wandb_run is not None:
            try:
                self._log_wandb(iteration, metrics, samples)
            except Exception as e:  # tracking must never end a run
                self._wandb_failed(e)

    def close(self) -> None:
        if self._wandb_run is not None:
            try:
                self._wandb_run.finish()
            except Exception as e:
                log.warning("W&B finish failed (%s); metrics.csv is complete", e)
            self._wandb_run = None

    # -- CSV -----------------------------------------------------------------------------------
    def _derived_rows(self, latest: Mapping[int, dict] | None = None) -> list[dict[str, Any]]:
        """The CSV's rows rebuilt from what the run wrote: the finished iterations' metrics.json files (the
        source of truth), the rows already in metrics.csv for anything else, and the row being logged."""
        rows = {int(float(r["iteration"])): r for r in read_metrics_csv(self.csv_path)}
        for path in self.run_dir.glob("iter_*/metrics.json"):
            try:
                metrics = json.loads(path.read_text())
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

    # -- Weights & Biases ----------------------------------------------------------------------
    def _start_wandb(self, project, entity, name, group, tags, mode, init_timeout):
        try:
            import wandb
        except ImportError:
            log.warning("logger=wandb but the wandb package is not installed; logging to metrics.csv only")
            return None
        if mode is None and not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
            mode = "offline"  # no key: keep a local run that `wandb sync` can upload later
        kwargs = dict(
            project=project,
            entity=entity,
            name=name,
            group=group,
            tags=tags,
            id=self._run_id(),
            resume="allow",
            config=self._hydra_config(),
            dir=None if os.environ.get("WANDB_DIR") else str(self.run_dir),
            settings=wandb.Settings(init_timeout=init_timeout),
        )
        try:
            return wandb.init(mode=mode, **kwargs)
        except Exception as e:
            if mode == "offline":
                self._wandb_failed(e)
                return None
            log.warning("W&B init failed (%s); retrying offline", e)
        try:
            return wandb.init(mode="offline", **kwargs)
        except Exception as e:
            self._wandb_failed(e)
            return None

    def _run_id(self) -> str:
        """One W&B run per run folder, so a resumed run continues the same W&B run."""
        path = self.run_dir / "wandb_run_id.txt"
        if not path.exists():
            atomic_write_text(path, uuid.uuid4().hex[:12])
        return path.read_text().strip()

    def _hydra_config(self) -> dict | None:
        path = self.run_dir / ".hydra" / "config.yaml"
        if not path.exists():
            return None
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)

    def _log_wandb(self, iteration: int, metrics: Mapping[str, Any], samples: Sequence[Sample] | None) -> None:
        import wandb

        data = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))
        }
        if samples and self.table_rows:
            rows = [
                [iteration, s.prompt_idx, s.sample_idx, s.prompt, s.response, s.reward]
                for s in list(samples)[: self.table_rows]
            ]
            data["selected_samples"] = wandb.Table(
                columns=["iteration", "prompt_idx", "sample_idx", "prompt", "response", "reward"], data=rows
            )
        self._wandb_run.log(data, step=iteration)

    def _wandb_failed(self, error: Exception) -> None:
        log.warning("W&B disabled after an error (%s: %s); logging to metrics.csv only", type(error).__name__, error)
        self._wandb_run = None
