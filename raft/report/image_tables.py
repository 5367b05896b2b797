"""The paper's Table 8 layout for image runs (task=diffusion_raft): each score in and out of domain,
before and after RAFT, mean ± sample std over seeds of each run's mean."""

from __future__ import annotations

import csv
import io
import math

from raft.report.collect import Group, Run
from raft.report.tables import mean_std

SPLITS = {"in_domain": "in-domain", "out_of_domain": "out-of-domain"}
WHEN = {"before": "before", "after": "RAFT"}


def is_image_run(run: Run) -> bool:
    """Its evaluation.json is {"before"/"after": {split: {score: {"mean", "std", "n"}}}}."""
    nested = [v for v in (run.after or {}).values() if isinstance(v, dict)]
    return bool(nested) and all(isinstance(s, dict) and "mean" in s for v in nested for s in v.values())


def _scores(groups: list[Group]) -> list[str]:
    return list(dict.fromkeys(name for g in groups for run in g.runs for split in (run.after or {}).values()
                              if isinstance(split, dict) for name in split))


def _values(group: Group, score: str, split: str, when: str) -> list[float]:
    values = []
    for run in group.runs:
        stats = (getattr(run, when) or {}).get(split, {}).get(score)
        if stats and math.isfinite(stats["mean"]):
            values.append(float(stats["mean"]))
    return values


def _columns() -> list[tuple[str, str]]:
    return [(split, when) for split in SPLITS for when in WHEN]


def image_markdown(groups: list[Group]) -> str:
    header = ["Configuration", "Score", "Seeds"] + [f"{SPLITS[s]} {WHEN[w]}" for s, w in _columns()]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for group in groups:
        for score in _scores([group]):
            cells = []
            for split, when in _columns():
                mean, std = mean_std(_values(group, score, split, when))
                cells.append("-" if math.isnan(mean) else f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}"))
            lines.append(f"| {group.label} | {score} | {len(group.runs)} | " + " | ".join(cells) + " |")
    note = ("Each cell: the mean score over a run's evaluation images, then mean ± sample std (n-1) over the "
            "runs (seeds) of a configuration. In-domain prompts are those RAFT trained on.")
    return "\n".join(lines + ["", note]) + "\n"


def image_csv(groups: list[Group]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["configuration", "score", "seeds"] + [f"{s}_{w}_{x}" for s, w in _columns() for x in ("mean", "std")])
    for group in groups:
        for score in _scores([group]):
            stats = [mean_std(_values(group, score, s, w)) for s, w in _columns()]
            writer.writerow([group.label, score, len(group.runs)] +
                            [x for mean, std in stats for x in (mean, "" if std is None else std)])
    return out.getvalue()
