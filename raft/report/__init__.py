"""`raft report PATH [--out DIR] [--wandb]`: paper-style tables and figures from one run folder or a multirun
folder (with --wandb also attached to the runs' W&B group)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raft.infra.atomic import atomic_write_text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="raft report", description=__doc__)
    parser.add_argument("path", type=Path, help="a run folder, or a folder with many (a multirun sweep)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: PATH/report)")
    parser.add_argument(
        "--stage",
        choices=("last", "best", "both"),
        default="last",
        help="which stage of each run to tabulate: the last, the best evaluated one (the paper's "
        "choice), or both side by side (default: last)",
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also attach the table and figures to the runs' W&B group (offline without WANDB_API_KEY)",
    )
    args = parser.parse_args(argv)

    from raft.report.collect import find_runs, group_runs
    from raft.report.image_tables import image_csv, image_markdown, is_image_run
    from raft.report.plots import write_plots
    from raft.report.tables import build_rows, csv_table, latex_table, markdown_table

    if not args.path.is_dir():
        print(f"raft report: {args.path} is not a folder", file=sys.stderr)
        return 2
    runs = find_runs(args.path)
    if not runs:
        print(f"raft report: no run folders (with metrics.csv or evaluation.json) under {args.path}", file=sys.stderr)
        return 2
    out = args.out or args.path / "report"
    groups = group_runs(runs)
    written = ["results.md", "results.csv"]
    if all(is_image_run(run) for run in runs):  # diffusion runs: the paper's Table 8 layout
        markdown = image_markdown(groups)
        atomic_write_text(out / "results.csv", image_csv(groups))
    else:
        rows = build_rows(groups, ("last", "best") if args.stage == "both" else (args.stage,))
        markdown = markdown_table(rows)
        atomic_write_text(out / "results.csv", csv_table(rows))
        atomic_write_text(out / "results.tex", latex_table(rows))
        written.append("results.tex")
    atomic_write_text(out / "results.md", markdown)
    plots = write_plots(groups, out)

    print(f"{len(runs)} runs in {len(groups)} configurations under {args.path}\n")
    print(markdown)
    print(f"written to {out}: " + ", ".join(written + [p.name for p in plots]))
    if args.wandb:
        from raft.report.wandb_publish import publish

        try:
            group = publish(out, [run.path for run in runs], written)
        except Exception as e:  # the files are written; say why W&B did not get them
            print(f"raft report: W&B failed ({type(e).__name__}: {e}); the report is in {out}", file=sys.stderr)
            return 1
        print(f"attached to W&B group {group!r}")
    return 0
