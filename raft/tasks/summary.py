"""What a finished RAFT run shows its user: a before/after table and the reward-per-iteration plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from raft.infra.console import show

ROWS = [  # (label, key in evaluation dicts)
    ("policy reward (held-out)", "reward"),
    ("best-of-K reward (held-out)", "best_of_k_reward"),
    ("accuracy (pass@1, held-out)", "accuracy"),
    ("pass@K (held-out)", "pass_at_k"),
    ("perplexity on references", "ppl"),
    ("MSTTR-100", "msttr_100"),
    ("distinct-1", "distinct_1"),
    ("distinct-2", "distinct_2"),
    ("mean length (words)", "length"),
]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def before_after_table(before: dict, after: dict) -> str:
    lines = [f"| {'metric':<28} | {'before':>9} | {'after':>9} |", f"|{'-' * 30}|{'-' * 11}|{'-' * 11}|"]
    for label, key in ROWS:
        if _fmt(before.get(key)) != "-" or _fmt(after.get(key)) != "-":  # e.g. no perplexity without references
            lines.append(f"| {label:<28} | {_fmt(before.get(key)):>9} | {_fmt(after.get(key)):>9} |")
    return "\n".join(lines)


def print_before_after(before: dict, after: dict, history: Sequence[dict], run_dir: Path) -> None:
    show(before_after_summary(before, after, history, run_dir))


def before_after_summary(before: dict, after: dict, history: Sequence[dict], run_dir: Path) -> str:
    lines = []
    if before or after:
        n = after.get("n") or before.get("n")
        lines += [f"Before/after on {n} held-out prompts:", before_after_table(before, after)]
    if history:
        first, last = history[0], history[-1]
        who = "policy" if "policy_reward" in first else "teacher"  # a teacher's samples carry its own name
        best = "best_of_k_reward" if who == "policy" else "teacher_best_of_k_reward"
        lines.append(
            f"training prompts: {who} reward {first[f'{who}_reward']:.3f} (iteration 0) -> "
            f"{last[f'{who}_reward']:.3f} (iteration {last['iteration']}), "
            f"best-of-K {first[best]:.3f} -> {last[best]:.3f}"
        )
        if "capped_share" in last:
            lines.append(
                f"samples cut at max_new_tokens: {first['capped_share']:.0%} (iteration 0) -> "
                f"{last['capped_share']:.0%} (iteration {last['iteration']})"
            )
    lines.append(f"run folder: {run_dir}  (reward_curve.png, metrics.csv, evaluation.json, iter_*/)")
    return "\n".join(lines)


def plot_run(history: Sequence[dict], path: Path) -> None:
    """Paper Figure 1 (left) for one run: the policy's reward and its best-of-K target per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    its = [h["iteration"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if "policy_reward" in history[0]:
        ax.plot(its, [h["policy_reward"] for h in history], "o-", label="policy (mean of K samples)")
        ax.plot(its, [h["best_of_k_reward"] for h in history], "s-", label="best-of-K (selected target)")
    else:  # distillation / expert data: the K samples are the teacher's
        ax.plot(its, [h["teacher_reward"] for h in history], "o-", label="teacher (mean of K samples)")
        ax.plot(its, [h["teacher_best_of_k_reward"] for h in history], "s-", label="teacher best-of-K (selected)")
    evals = [(h["iteration"], h["eval_reward"]) for h in history if "eval_reward" in h]
    if evals:
        ax.plot(*zip(*evals), "^--", label="policy on held-out prompts")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("RAFT iteration (stage)")
    ax.set_ylabel("mean reward")
    ax.set_title("Reward per iteration: policy vs its best-of-K target")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
