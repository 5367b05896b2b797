"""Held-out accuracy across seeds: the `results.json` of several `raft_vs_grpo.py --set seed=S` runs side by side.

For each method and step it prints every seed's accuracy, their mean and standard deviation, and for each raft method
the difference of its mean from TRL's with the seed noise of that difference (the two means' standard errors
combined), and the same difference paired seed by seed; it writes `accuracy_across_seeds.png` (mean and one standard
deviation) into `--out`.

    python benchmarks/across_seeds.py outputs/benchmarks/grpo_seeds/seed0 outputs/benchmarks/grpo_seeds/seed1 ... \
        --out outputs/benchmarks/grpo_seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def curves(folders: list[Path]) -> dict[str, dict[int, list[float]]]:
    """method -> step -> the accuracy of each seed that ran it (step 0: before training)."""
    out: dict[str, dict[int, list[float]]] = {}
    for folder in folders:
        for result in json.loads((folder / "results.json").read_text()):
            steps = out.setdefault(result["method"], {})
            steps.setdefault(0, []).append(result["start_accuracy"])
            for s in result["steps"]:
                steps.setdefault(s["step"], []).append(s["accuracy"])
    return out


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def table(data: dict[str, dict[int, list[float]]]) -> str:
    lines = ["| method | step | seeds | accuracy per seed | mean | sd |", "|---|---:|---:|---|---:|---:|"]
    for method, steps in data.items():
        for step, values in sorted(steps.items()):
            mean, sd = summary(values)
            each = " / ".join(f"{v:.3f}" for v in values)
            lines.append(f"| {method} | {step} | {len(values)} | {each} | {mean:.3f} | {sd:.3f} |")
    return "\n".join(lines)


def against_trl(data: dict[str, dict[int, list[float]]]) -> list[str]:
    """Each raft method's mean minus TRL's per step, with the standard error of that difference."""
    trl = data.get("trl_grpo")
    if not trl:
        return []
    lines = []
    for method, steps in data.items():
        if method == "trl_grpo":
            continue
        parts = []
        for step in sorted(set(steps) & set(trl)):
            a, b = steps[step], trl[step]
            if len(a) < 2 or len(b) < 2:
                continue
            se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
            diff = statistics.mean(a) - statistics.mean(b)
            spread = f"± {se:.3f} ({abs(diff) / se:.1f} se)" if se else "(every seed the same)"
            parts.append(f"step {step}: {diff:+.3f} {spread}")
        if parts:
            lines.append(f"{method} - trl_grpo: " + "; ".join(parts))
    return lines


def paired_against_trl(folders: list[Path]) -> list[str]:
    """Each raft method's accuracy minus TRL's on the same seed (same start, same held-out draws), per step: the mean
    of those differences and its standard error over the seeds where both ran. Seeds start from different accuracies
    (the evaluation's draws follow the seed), which the unpaired comparison counts as noise and this one removes."""
    per_seed: dict[str, dict[int, list[float]]] = {}
    for folder in folders:
        results = {r["method"]: r for r in json.loads((folder / "results.json").read_text())}
        trl = results.get("trl_grpo")
        if trl is None:
            continue
        theirs = {s["step"]: s["accuracy"] for s in trl["steps"]}
        for method, result in results.items():
            if method == "trl_grpo":
                continue
            for s in result["steps"]:
                if s["step"] in theirs and s["accuracy"] is not None and theirs[s["step"]] is not None:
                    per_seed.setdefault(method, {}).setdefault(s["step"], []).append(s["accuracy"] - theirs[s["step"]])
    lines = []
    for method, steps in per_seed.items():
        parts = []
        for step, diffs in sorted(steps.items()):
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
            parts.append(f"step {step}: {statistics.mean(diffs):+.3f} ± {se:.3f} ({len(diffs)} seeds)")
        lines.append(f"{method} - trl_grpo, paired by seed: " + "; ".join(parts))
    return lines


def plot(data: dict[str, dict[int, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, steps in data.items():
        xs = sorted(steps)
        means = [summary(steps[x])[0] for x in xs]
        sds = [summary(steps[x])[1] if len(steps[x]) > 1 else 0.0 for x in xs]
        ax.plot(xs, means, "o-", label=f"{method} ({len(steps[xs[-1]])} seeds)")
        ax.fill_between(xs, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)], alpha=0.2)
    ax.set_xlabel("optimizer step (b x K samples each)")
    ax.set_ylabel("held-out accuracy (pass@1)")
    ax.set_xticks(sorted({x for steps in data.values() for x in steps}))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="--out folders of raft_vs_grpo.py, one per seed")
    parser.add_argument("--out", type=Path, required=True, help="where accuracy_across_seeds.png goes")
    args = parser.parse_args()
    data = curves(args.folders)
    print(table(data))
    for line in against_trl(data) + paired_against_trl(args.folders):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(data, args.out / "accuracy_across_seeds.png")
    print(f"wrote {args.out / 'accuracy_across_seeds.png'}")


if __name__ == "__main__":
    main()
