"""The paper's figures from run folders: reward curves (Fig. 1 left, Fig. 2), reward vs perplexity
(Fig. 1 right) and KL per iteration (Fig. 3). One line (pair) per configuration, mean ± std over seeds."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from raft.report.collect import Group  # noqa: E402

STD_NOTE = "shaded: ± std over seeds"


def series(group: Group, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, mean, std) of one metrics.csv column over the group's seeds; std 0 for a single seed."""
    per_run = [{int(r["iteration"]): r.get(column, math.nan) for r in run.rows} for run in group.runs]
    its = sorted({i for values in per_run for i, v in values.items() if math.isfinite(v)})
    means, stds = [], []
    for i in its:
        vals = np.array([values[i] for values in per_run if math.isfinite(values.get(i, math.nan))])
        means.append(vals.mean())
        stds.append(vals.std(ddof=1) if len(vals) > 1 else 0.0)
    return np.array(its), np.array(means), np.array(stds)


def _line(ax, its, mean, std, color, style, label, alpha=0.2) -> None:
    ax.plot(its, mean, style, color=color, label=label)
    if np.any(std > 0):
        ax.fill_between(its, mean - std, mean + std, color=color, alpha=alpha, linewidth=0)


def _save(fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _colors(n: int):
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def reward_curve(groups: list[Group], path: Path) -> Path | None:
    """Policy reward and best-of-K reward on the training prompts per iteration (paper Figure 1 left)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for group, color in zip(groups, _colors(len(groups))):
        for column, style, what, alpha in (
            ("policy_reward", "o-", "policy", 0.2),
            ("best_of_k_reward", "s--", "best-of-K", 0.08),
            ("teacher_reward", "o:", "teacher", 0.2),
            ("teacher_best_of_k_reward", "s:", "teacher best-of-K", 0.08),
        ):
            its, mean, std = series(group, column)
            if len(its):
                _line(ax, its, mean, std, color, style, f"{group.label}: {what}", alpha)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(f"Reward per RAFT iteration: policy (solid) vs best-of-K (dashed)\n{STD_NOTE}")
    ax.set_xlabel("RAFT iteration")
    ax.set_ylabel("mean reward on the iteration's prompts")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, ax, path)


def reward_vs_perplexity(groups: list[Group], path: Path) -> Path | None:
    """Held-out reward against perplexity on reference responses, one point per evaluation (Figure 1 right)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = False
    for group, color in zip(groups, _colors(len(groups))):
        its_r, reward, _ = series(group, "eval_reward")
        its_p, ppl, _ = series(group, "eval_ppl")
        both = sorted(set(its_r.tolist()) & set(its_p.tolist()))
        if both:
            r = [reward[its_r.tolist().index(i)] for i in both]
            p = [ppl[its_p.tolist().index(i)] for i in both]
            ax.plot(p, r, "o-", color=color, label=f"{group.label} (iterations {both[0]}-{both[-1]})")
            ax.annotate(f"it {both[-1]}", (p[-1], r[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            drawn = True
    starts = [
        (run.before["ppl"], run.before["reward"])
        for g in groups
        for run in g.runs
        if run.before and math.isfinite(run.before.get("ppl", math.nan))
    ]
    if starts:
        ax.plot(*np.mean(starts, axis=0), "k*", markersize=12, label="starting checkpoint")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title("Held-out reward against perplexity on reference responses\n(mean over seeds per evaluation)")
    ax.set_xlabel("perplexity of the policy on reference responses (lower = more fluent)")
    ax.set_ylabel("mean held-out reward")
    return _save(fig, ax, path)


def per_iteration(groups: list[Group], path: Path, column: str, title: str, ylabel: str) -> Path | None:
    """One metrics.csv column per iteration, one line per configuration (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = False
    for group, color in zip(groups, _colors(len(groups))):
        its, mean, std = series(group, column)
        if len(its):
            _line(ax, its, mean, std, color, "o-", group.label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title(f"{title}\n{STD_NOTE}")
    ax.set_xlabel("RAFT iteration")
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, ax, path)


def kl_curve(groups: list[Group], path: Path) -> Path | None:
    """KL(policy each stage produced || initial policy) per iteration (paper Figure 3)."""
    return per_iteration(
        groups,
        path,
        "kl",
        "KL divergence between the policy each stage produced and the initial one",
        "KL estimate (nats per response, fresh samples at temperature 1)",
    )


def capped_curve(groups: list[Group], path: Path) -> Path | None:
    """Share of each stage's samples cut at max_new_tokens: a policy that learns to stop shows it falling."""
    return per_iteration(
        groups,
        path,
        "capped_share",
        "Share of samples cut at the length cap (max_new_tokens)",
        "share of the K samples per prompt",
    )


def write_plots(groups: list[Group], out_dir: Path) -> list[Path]:
    made = [
        reward_curve(groups, out_dir / "reward_curve.png"),
        reward_vs_perplexity(groups, out_dir / "reward_vs_ppl.png"),
        kl_curve(groups, out_dir / "kl_curve.png"),
        capped_curve(groups, out_dir / "capped_share.png"),
    ]
    return [p for p in made if p is not None]
