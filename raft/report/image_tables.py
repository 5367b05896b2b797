"""The paper's Table 8 layout for image runs (task=diffusion_raft): each score in and out of domain,
before and after RAFT. One builder (`table8`) for the run's own table (mean ± std over its images) and
for `raft report` (mean ± sample std over seeds of each run's mean)."""

from __future__ import annotations

import csv
import io
import math
from typing import Sequence

from raft.report.collect import Group, Run
from raft.report.tables import mean_std

SPLITS = {"in_domain": "in-domain", "out_of_domain": "out-of-domain"}
WHEN = {"before": "before", "after": "RAFT"}
COLUMNS = [(split, when) for split in SPLITS for when in WHEN]


def table8(first: Sequence[str], rows: Sequence[Sequence[str]], left: int | None = None) -> str:
    """Markdown: the `first` columns, then each split before and after RAFT. Columns from index `left` on
    are right-aligned (None: all left-aligned)."""
    header = [*first, *(f"{SPLITS[split]} {WHEN[when]}" for split, when in COLUMNS)]
    left = len(header) if left is None else left
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * left + "---:|" * (len(header) - left)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _run_cell(stats: dict | None) -> str:
    return f"{stats['mean']:.3g} ± {stats['std']:.2g}" if stats else "-"


def run_table(before: dict, after: dict) -> str:
    """One run's Table 8: {split: {score: {mean, std, n}}} before and after, mean ± std over its images."""
    names = list(dict.fromkeys(name for result in (before, after) for split in result.values() for name in split))
    rows = [
        [name] + [_run_cell(result.get(split, {}).get(name)) for split in SPLITS for result in (before, after)]
        for name in names
    ]
    return table8(["metric"], rows)


def is_image_run(run: Run) -> bool:
    """Its evaluation.json is {"before"/"after": {split: {score: {"mean", "std", "n"}}}}."""
    nested = [v for v in (run.after or {}).values() if isinstance(v, dict)]
    return bool(nested) and all(isinstance(s, dict) and "mean" in s for v in nested for s in v.values())


def _scores(groups: list[Group]) -> list[str]:
    return list(
        dict.fromkeys(
            name
            for g in groups
            for run in g.runs
            for split in (run.after or {}).values()
            if isinstance(split, dict)
            for name in split
        )
    )


def _values(group: Group, score: str, split: str, when: str) -> list[float]:
    values = []
    for run in group.runs:
        stats = (getattr(run, when) or {}).get(split, {}).get(score)
        if stats and math.isfinite(stats["mean"]):
            values.append(float(stats["mean"]))
    return values


def image_markdown(groups: list[Group]) -> str:
    rows = []
    for group in groups:
        for score in _scores([group]):
            cells = []
            for split, when in COLUMNS:
                mean, std = mean_std(_values(group, score, split, when))
                cells.append("-" if math.isnan(mean) else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}"))
            rows.append([group.label, score, str(len(group.runs))] + cells)
    note = (
        "Each cell: the mean score over a run's evaluation images, then mean ± sample std (n-1) over the "
        "runs (seeds) of a configuration. In-domain prompts are those RAFT trained on."
    )
    return "\n".join([table8(["Configuration", "Score", "Seeds"], rows, left=2), "", note]) + "\n"


def image_csv(groups: list[Group]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["configuration", "score", "seeds"] + [f"{s}_{w}_{x}" for s, w in COLUMNS for x in ("mean", "std")])
    for group in groups:
        for score in _scores([group]):
            stats = [mean_std(_values(group, score, s, w)) for s, w in COLUMNS]
            writer.writerow(
                [group.label, score, len(group.runs)]
                + [x for mean, std in stats for x in (mean, "" if std is None else std)]
            )
    return out.getvalue()
