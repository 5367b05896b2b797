"""Paper-style result tables (RAFT paper Tables 3-7) in Markdown, CSV and LaTeX: one row per configuration."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass

from raft.report.collect import Group

# (key in evaluation dicts, column header, decimals): the paper's column order, then the sample size.
COLUMNS = [
    ("reward", "Reward", 3),
    ("ppl", "PPL", 3),
    ("msttr_100", "MSTTR-100", 3),
    ("distinct_1", "Distinct-1", 3),
    ("distinct_2", "Distinct-2", 3),
    ("unique_1", "Unique-1", 0),
    ("unique_2", "Unique-2", 0),
    ("length", "Length", 1),
    ("n", "n", 0),
]
# Shown when some run recorded them: the best-of-K reward of the first stage's samples (the paper's Table 5
# "initial best-of-K" column: what ranking has to learn from), and the cost (PPO vs RAFT: time, memory).
OPTIONAL_COLUMNS = [
    ("accuracy", "Accuracy", 3),  # verifiable tasks (exact-match reward): pass@1 and pass@K on held-out problems
    ("pass_at_k", "Pass@K", 3),
    ("initial_best_of_k", "Initial best-of-K", 3),
    ("stage", "Stage", 0),
    ("capped_share", "At length cap", 2),
    ("wall_time_s", "Train time (s)", 0),
    ("peak_rss_mb", "Peak RSS (MiB)", 0),
    ("peak_gpu_memory_mb", "Peak GPU (MiB)", 0),
]
SOURCE_MARKS = {"evaluation.json": "", "metrics.csv": " *", "training reward": " †"}
NOTES = [
    "Mean ± sample standard deviation (n-1) over seeds where a configuration has several.",
    "Unique-1/Unique-2 count the n-grams that occur exactly once among the n evaluated responses "
    "(column n): compare them only at equal n.",
    "Initial best-of-K: mean over the first stage's prompts of the best of their K sampled rewards.",
    "`start` rows evaluate the starting checkpoint; the others the policy after the last RAFT iteration, and "
    "`[best stage]` rows the evaluated stage with the highest held-out reward (column Stage, counted from 0), "
    "as the paper reports; picked on the evaluated prompts, it is the optimistic one. At length cap: the share "
    "of that stage's training samples cut at max_new_tokens. "
    "Train time sums the iterations (sampling, scoring, fine-tuning); Peak RSS is the training process's "
    "high-water mark during them. "
    "* = from the last row of metrics.csv (no evaluation.json); † = no held-out reward, training-prompt reward.",
]


@dataclass
class Row:
    label: str
    stage: str  # "start", "after" (the last stage) or "best" (the best evaluated stage)
    values: dict[str, list[float]]  # finite values, one per seed
    seeds: int


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def build_rows(groups: list[Group], stages: tuple[str, ...] = ("last", "best")) -> list[Row]:
    rows: list[Row] = []
    keys = [key for key, _, _ in COLUMNS + OPTIONAL_COLUMNS]
    starts: dict[str, dict[str, dict]] = {}  # model -> seed -> before (equal seeds evaluate the same model alike)
    for group in groups:
        for run in group.runs:
            if run.before:
                starts.setdefault(run.model, {}).setdefault(str(run.seed), run.before)
    for model, by_seed in starts.items():
        befores = list(by_seed.values())
        rows.append(
            Row(f"start: {model}", "start", {key: _finite(b.get(key) for b in befores) for key in keys}, len(befores))
        )
    for group in groups:
        afters = [run.after for run in group.runs if run.after]
        if afters and "last" in stages:
            marks = "".join(sorted({SOURCE_MARKS[run.after_source] for run in group.runs if run.after}))
            rows.append(
                Row(
                    group.label + marks,
                    "after",
                    {key: _finite(a.get(key) for a in afters) for key in keys},
                    len(afters),
                )
            )
        bests = [run.best for run in group.runs if run.best]
        if bests and "best" in stages:
            rows.append(
                Row(
                    f"{group.label} [best stage]",
                    "best",
                    {key: _finite(b.get(key) for b in bests) for key in keys},
                    len(bests),
                )
            )
    return rows


def mean_std(values: list[float]) -> tuple[float, float | None]:
    if not values:
        return math.nan, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cell(values: list[float], decimals: int, pm: str, key: str = "") -> str:
    if key == "n" and values:  # a sample size, not a measurement: show it, or its range
        low, high = int(min(values)), int(max(values))
        return str(low) if low == high else f"{low}-{high}"
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "-"
    if std is None:
        return f"{mean:.{decimals}f}"
    decimals = max(decimals, 1)  # a mean count over seeds is not an integer
    return f"{mean:.{decimals}f}{pm}{std:.{decimals}f}"


def columns(rows: list[Row]) -> list[tuple[str, str, int]]:
    """The paper's columns, plus the optional columns that some row has values for."""
    return COLUMNS + [c for c in OPTIONAL_COLUMNS if any(row.values.get(c[0]) for row in rows)]


def markdown_table(rows: list[Row]) -> str:
    shown = columns(rows)
    header = ["Configuration", "Seeds"] + [title for _, title, _ in shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [row.label, str(row.seeds)] + [_cell(row.values[k], d, " ± ", k) for k, _, d in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"{note}" for note in NOTES]) + "\n"


def csv_table(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    shown = columns(rows)
    writer.writerow(["configuration", "stage", "seeds"] + [f"{k}_{s}" for k, _, _ in shown for s in ("mean", "std")])
    for row in rows:
        stats = [mean_std(row.values[k]) for k, _, _ in shown]
        writer.writerow(
            [row.label, row.stage, row.seeds] + [x for mean, std in stats for x in (mean, "" if std is None else std)]
        )
    return out.getvalue()


def _latex_escape(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("†", r"$^\dagger$"),
        ("~", r"\~{}"),
    ):
        text = text.replace(char, escaped)
    return text


def latex_table(rows: list[Row]) -> str:
    shown = columns(rows)
    header = ["Configuration", "Seeds"] + [title for _, title, _ in shown]
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        cells = [_latex_escape(row.label), str(row.seeds)] + [
            _cell(row.values[k], d, r" $\pm$ ", k) for k, _, d in shown
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
