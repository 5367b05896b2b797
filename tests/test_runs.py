"""The `raft` command end to end on the tiny random model: a run, a resumed run, a multirun sweep."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "model=tiny",
    "task.iterations=2",
    "task.batch_size=4",
    "sampler.max_new_tokens=6",
    "sampler.K=2",
    "evaluator.n_prompts=4",
    "trainer.max_epochs=1",
    "trainer.precision=32",
]


def raft(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", "raft", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_run_writes_every_file_and_prints_the_table(tmp_path):
    out = raft(*TINY, f"hydra.run.dir={tmp_path}")
    assert "Before/after on 4 held-out prompts" in out.stdout
    assert "| policy reward (held-out)" in out.stdout
    for name in (
        "evaluation.json",
        "metrics.csv",
        "reward_curve.png",
        ".hydra/config.yaml",
        "iter_000/selected.jsonl",
        "iter_001/checkpoint/config.json",
    ):
        assert (tmp_path / name).exists(), name
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert {"reward", "best_of_k_reward", "distinct_2", "length"} <= evaluation["after"].keys()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "policy_reward" in rows[0]

    again = raft(*TINY, f"hydra.run.dir={tmp_path}")  # finished: everything is reused
    assert "sampling" not in again.stderr
    assert json.loads((tmp_path / "evaluation.json").read_text()) == evaluation


@pytest.mark.slow
def test_multirun_over_k_and_report(tmp_path):
    raft("-m", *TINY, "sampler.K=2,4", f"hydra.sweep.dir={tmp_path}")
    runs = {k: next(p for p in tmp_path.iterdir() if f"sampler.K={k}," in p.name) for k in (2, 4)}
    for k, run in runs.items():
        selected = (run / "iter_000" / "selected.jsonl").read_text().splitlines()
        samples = (run / "iter_000" / "samples.jsonl").read_text().splitlines()
        assert (len(selected), len(samples)) == (4, 4 * k)  # one kept per prompt out of K
    report = subprocess.run(
        [sys.executable, "-m", "raft", "report", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "sampler.K=2" in report.stdout and "sampler.K=4" in report.stdout


@pytest.mark.slow
def test_ppo_from_the_command_line(tmp_path):
    out = raft(
        "task=ppo",
        "model=tiny",
        "task.iterations=1",
        "task.batch_size=4",
        "sampler.max_new_tokens=6",
        "evaluator.n_prompts=4",
        "module.minibatch_size=2",
        "module.ppo_epochs=1",
        f"hydra.run.dir={tmp_path}",
    )
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert {"reward", "wall_time_s", "peak_rss_mb"} <= evaluation["after"].keys()
    assert (tmp_path / "iter_000" / "checkpoint" / "adapter_config.json").exists()
    assert "Before/after on 4 held-out prompts" in out.stdout


@pytest.mark.slow
def test_grpo_and_raftpp_from_the_command_line(tmp_path):
    one = [a if a != "task.iterations=2" else "task.iterations=1" for a in TINY]
    grpo = raft("task=grpo", *one, "module.batch_size=4", f"hydra.run.dir={tmp_path / 'grpo'}")
    assert "Before/after on 4 held-out prompts" in grpo.stdout
    metrics = json.loads((tmp_path / "grpo" / "iter_000" / "metrics.json").read_text())
    assert {"grpo_clip_fraction", "grpo_mean_abs_advantage", "seconds_training", "peak_rss_mb_training"} <= set(metrics)
    raft(
        *one,
        "module=raftpp",
        "selector=threshold",
        "selector.threshold=-1",
        f"hydra.run.dir={tmp_path / 'raftpp'}",
    )
    metrics = json.loads((tmp_path / "raftpp" / "iter_000" / "metrics.json").read_text())
    assert metrics["selected_n"] == 4 * 2 and "raftpp_clip_fraction" in metrics  # VADER is >= -1: every sample
