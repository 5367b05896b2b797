"""Reward-hacking monitor: watches the diversity of the selected (filtered) set each iteration.

Paper appendix A.2: when the reward model favoured '#' and emoji, the model collapsed onto them, and
this showed first as a quick drop of the diversity of the filtered data set. The monitor compares each
iteration's selected set with the first one (iteration 0) and warns or stops on a large relative drop,
or when too many selected responses are exact duplicates.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from raft.evaluation.metrics.diversity import distinct_n, duplicate_share, mean_length, msttr
from raft.infra import strict_json

log = logging.getLogger("raft")

METRICS = {  # name -> function of the selected texts
    "distinct_1": lambda texts: distinct_n(texts, 1),
    "distinct_2": lambda texts: distinct_n(texts, 2),
    "msttr_100": msttr,
    "length": mean_length,
}
ALWAYS = ("distinct_2", "msttr_100", "length")  # reported every iteration, whether watched or not


class RewardHackingDetected(RuntimeError):
    """Raised by a monitor with action='stop' when the selected set collapses."""


class HackingMonitor:
    def __init__(
        self,
        max_drop: float = 0.3,
        metrics: Sequence[str] = ("distinct_2", "msttr_100"),
        max_duplicate_share: float | None = 0.5,
        action: str = "warn",
        baseline: Mapping[str, float] | None = None,
    ):
        if not 0 < max_drop < 1:
            raise ValueError(f"monitor.max_drop must be in (0, 1) (a relative drop), got {max_drop}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"monitor.metrics has unknown names {unknown}; choose from {sorted(METRICS)}")
        if max_duplicate_share is not None and not 0 <= max_duplicate_share <= 1:
            raise ValueError(f"monitor.max_duplicate_share must be in [0, 1] or null, got {max_duplicate_share}")
        if action not in ("warn", "stop"):
            raise ValueError(f"monitor.action must be 'warn' or 'stop', got {action!r}")
        self.max_drop, self.metrics, self.action = max_drop, tuple(metrics), action
        self.max_duplicate_share = max_duplicate_share
        self.baseline: dict[str, float] | None = dict(baseline) if baseline is not None else None
        self.alarms: list[str] = []

    def baseline_from(self, rows: Iterable[Mapping[str, object]]) -> None:
        """Take the baseline from metrics rows (metrics.csv or metrics.json dicts): the lowest iteration."""
        rows = sorted(rows, key=lambda r: int(float(r["iteration"])))
        if rows:
            self.baseline = {k[len("selected_") :]: _float(v) for k, v in rows[0].items() if k.startswith("selected_")}

    def update(self, iteration: int, selected_texts: Sequence[str], baseline_dir: str | Path | None = None) -> dict:
        """Metrics of this iteration's selected set; warn or raise on a collapse against the baseline.

        `baseline_dir` (the run's iter_000 folder) restores the baseline after a resume from its
        metrics.json; when there is none yet, this update's values become the baseline.
        """
        names = list(dict.fromkeys(ALWAYS + self.metrics))
        current = {name: METRICS[name](selected_texts) for name in names}
        current["duplicate_share"] = duplicate_share(list(selected_texts))
        if self.baseline is None and baseline_dir is not None:
            saved = Path(baseline_dir) / "metrics.json"
            if saved.exists():
                self.baseline_from([strict_json.loads_numbers(saved.read_text())])
        if self.baseline is None:
            self.baseline = dict(current)
        else:
            self._check(iteration, current)
        return {f"selected_{k}": v for k, v in current.items()}

    def _check(self, iteration: int, current: Mapping[str, float]) -> None:
        problems = []
        for name in self.metrics:
            base, now = self.baseline.get(name, math.nan), current[name]
            if math.isfinite(base) and math.isfinite(now) and base > 0 and (base - now) / base > self.max_drop:
                problems.append(
                    f"selected {name} fell from {base:.4g} (iteration 0) to {now:.4g}, "
                    f"a drop of {(base - now) / base:.0%} > monitor.max_drop={self.max_drop:.0%}"
                )
        share = current["duplicate_share"]
        if self.max_duplicate_share is not None and share > self.max_duplicate_share:
            problems.append(
                f"{share:.0%} of selected responses are exact duplicates "
                f"(> monitor.max_duplicate_share={self.max_duplicate_share:.0%})"
            )
        if not problems:
            return
        message = (
            f"possible reward hacking at iteration {iteration}: "
            + "; ".join(problems)
            + ". Inspect selected.jsonl; a post-filter (filters=...) can remove the exploit."
        )
        self.alarms.append(message)
        if self.action == "stop":
            raise RewardHackingDetected(message)
        log.warning(message)


def _float(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # an empty CSV cell
