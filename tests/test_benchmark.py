"""benchmarks/raft_vs_grpo.py's bookkeeping on a run folder written here: per-stage seconds, the table, the plot."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "raft_vs_grpo.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("raft_vs_grpo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_seconds_are_the_runs_own(bench, tmp_path):
    """The split comes from the stage seconds raft records; the rest of the iteration is its evaluation. (It read
    file times once, and an iteration whose checkpoint the run had since deleted counted training as evaluation.)"""
    metrics = {"wall_time_s": 82.0, "seconds_sampling": 30.0, "seconds_scoring": 5.0, "seconds_training": 25.0}
    assert bench.stage_seconds(metrics) == {
        "sampling": 30.0,
        "scoring": 5.0,
        "training": 25.0,
        "kl": 0.0,
        "evaluation": 22.0,
    }


def test_table_and_plot(bench, tmp_path):
    step = {"accuracy": 0.5, "step_s": 10.0, "sampling": 6.0, "scoring": 1.0, "training": 3.0, "peak_rss_mb": 900.0}
    results = [
        {"method": "raft", "start_accuracy": 0.25, "steps": [{"step": 1, **step}, {"step": 2, **step}]},
        {"method": "trl_grpo", "start_accuracy": 0.25, "steps": [{"step": 1, **step, "accuracy": None}]},
    ]
    lines = bench.table(results, samples_per_step=128).splitlines()
    assert lines[4] == "| raft | 2 | 256 | 0.500 | 20 | 10 | 6 | 1 | 3 | 900 |"  # seconds add up over steps
    assert lines[6] == "| trl_grpo | 1 | 128 | - | 10 | 10 | 6 | 1 | 3 | 900 |"
    bench.plot([results[0]], tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_against_trl_reports_the_issues_ratios(bench):
    def run(method, accuracies, step_s, rss):
        steps = [{"step": i + 1, "accuracy": a, "step_s": step_s, "peak_rss_mb": rss} for i, a in enumerate(accuracies)]
        return {"method": method, "steps": steps}

    results = [run("raft", [0.2, 0.4, 0.5], 10.0, 500.0), run("trl_grpo", [0.3, 0.4, 0.4], 40.0, 2000.0)]
    (line,) = bench.against_trl(results)
    assert line == (
        "raft: TRL's accuracy after step 1 (0.300 in 40 s): 20 s = 0.50x; step 2 (0.400 in 80 s): 20 s = 0.25x; "
        "step 3 (0.400 in 120 s): 20 s = 0.17x; peak RSS per step 0.25x TRL's; step time 0.25x TRL's"
    )
    results[0]["steps"][1]["accuracy"] = results[0]["steps"][2]["accuracy"] = 0.1
    assert bench.against_trl(results)[0].count("not reached") == 3


def test_add_merges_only_runs_of_the_same_settings(bench):
    shared = {"preset": "arithmetic_raft", "set": ["task.batch_size=32"]}
    earlier = [{"method": "raft", "shared": shared, "v": 1}, {"method": "trl_grpo", "shared": shared, "v": 1}]
    new = [{"method": "raft", "shared": shared, "v": 2}, {"method": "raft_rej", "shared": shared, "v": 2}]
    assert [(r["method"], r["v"]) for r in bench.merged(earlier, new)] == [
        ("raft", 2),  # run again: replaced in place
        ("trl_grpo", 1),
        ("raft_rej", 2),
    ]
    other = [{"method": "raft_rej", "shared": {**shared, "set": []}}]
    with pytest.raises(SystemExit, match="use the same --preset and --set"):
        bench.merged(earlier, other)
    with pytest.raises(SystemExit, match="unrecorded settings"):
        bench.merged([{"method": "raft"}], new)


def test_a_method_may_run_more_steps_than_the_comparison_it_joins(bench):
    """Steps are each run's own: a RAFT run of 8 steps joins a 4-step TRL result (recorded, on 2026-12-02, with
    its steps among the shared settings), and is read back with its own 8."""
    shared = {"preset": "arithmetic_raft", "set": ["task.batch_size=32"]}
    earlier = [{"method": "trl_grpo", "shared": {**shared, "steps": 4}}]
    new = [{"method": "raft_long", "shared": shared, "iterations": 8}]
    assert [r["method"] for r in bench.merged(earlier, new)] == ["trl_grpo", "raft_long"]
    assert bench.iterations_of(new[0], 4) == 8 and bench.iterations_of(earlier[0], 1) == 4


def test_report_reads_each_run_with_the_steps_it_ran(bench, tmp_path):
    """--report once read every run for the command's --steps (default 4), and failed on a one-step comparison."""
    run = tmp_path / "raft"
    (run / "iter_000").mkdir(parents=True)
    (run / "evaluation.json").write_text('{"before": {"accuracy": 0.25}}')
    metrics = {"wall_time_s": 50.0, "seconds_sampling": 20.0, "seconds_training": 25.0, "peak_rss_mb": 900.0}
    (run / "iter_000" / "metrics.json").write_text(json.dumps({**metrics, "eval_accuracy": 0.5}))
    shared = {"preset": "none", "set": []}
    result = {"method": "raft", "overrides": "", "shared": shared, "iterations": 1}
    result.update(returncode=0, process_wall_s=60.0, process_peak_rss_mb=1000.0, note="resumed once")
    again = bench.report_again(result, argparse.Namespace(steps=4), tmp_path)
    assert [s["accuracy"] for s in again["steps"]] == [0.5] and again["steps"][0]["step_s"] == 45.0
    assert again["shared"] == shared  # kept, so a later --add still checks the settings
    assert again["process_wall_s"] == 60.0 and again["note"] == "resumed once"  # what it recorded stays


def test_a_raft_steps_peak_is_its_own_as_trls_is(bench, tmp_path):
    """TRL's step peak leaves its evaluation out; raft's was the task's peak so far, its starting evaluation in it
    (2139 MiB for a run whose stages peaked at 1993). The task's peak still bounds the process's."""
    run = tmp_path / "raft"
    (run / "iter_000").mkdir(parents=True)
    (run / "evaluation.json").write_text('{"before": {"accuracy": 0.25}}')
    metrics = {"wall_time_s": 50.0, "peak_rss_mb": 2139.0, "peak_rss_mb_step": 1993.0, "eval_accuracy": 0.5}
    (run / "iter_000" / "metrics.json").write_text(json.dumps(metrics))
    result = bench.raft_result("raft", "", 1, run, {"process_peak_rss_mb": 1100.0})
    assert result["steps"][0]["peak_rss_mb"] == 1993.0
    assert bench.with_process_peak(result)["process_peak_rss_mb"] == 2139.0
    del metrics["peak_rss_mb_step"]  # a run recorded before raft wrote it: the task's peak, as then
    (run / "iter_000" / "metrics.json").write_text(json.dumps(metrics))
    assert bench.raft_result("raft", "", 1, run, {})["steps"][0]["peak_rss_mb"] == 2139.0


def test_process_peak_is_never_below_a_steps_peak(bench):
    """wait4 reported 2236 MiB for a run whose training stage peaked at 2761 MiB: the stages reset VmHWM."""
    result = {"process_peak_rss_mb": 2236.0, "steps": [{"peak_rss_mb": 2486.0}, {"peak_rss_mb": 2761.0}]}
    assert bench.with_process_peak(result)["process_peak_rss_mb"] == 2761.0
    assert bench.with_process_peak({"process_peak_rss_mb": 5760.0, "steps": []})["process_peak_rss_mb"] == 5760.0


def test_across_seeds_gives_each_seed_mean_sd_and_the_difference_from_trl(tmp_path):
    spec = importlib.util.spec_from_file_location("across_seeds", SCRIPT.with_name("across_seeds.py"))
    seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeds)
    folders = []
    for seed, (ours, theirs) in enumerate([(0.5, 0.25), (0.75, 0.5), (1.0, 0.75)]):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        results = [
            {"method": name, "start_accuracy": 0.25, "steps": [{"step": 1, "accuracy": acc}]}
            for name, acc in (("grpo_1step", ours), ("trl_grpo", theirs))
        ]
        (folder / "results.json").write_text(json.dumps(results))
        folders.append(folder)
    data = seeds.curves(folders)
    assert data["grpo_1step"] == {0: [0.25] * 3, 1: [0.5, 0.75, 1.0]}
    assert "| grpo_1step | 1 | 3 | 0.500 / 0.750 / 1.000 | 0.750 | 0.250 |" in seeds.table(data)
    # difference of means 0.25, each mean's standard error 0.25 / sqrt(3): combined 0.204
    assert seeds.against_trl(data) == [
        "grpo_1step - trl_grpo: step 0: +0.000 (every seed the same); step 1: +0.250 ± 0.204 (1.2 se)"
    ]
    # paired by seed: every seed's difference is 0.25, so no spread
    assert seeds.paired_against_trl(folders) == [
        "grpo_1step - trl_grpo, paired by seed: step 1: +0.250 ± 0.000 (3 seeds)"
    ]
    seeds.plot(data, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
