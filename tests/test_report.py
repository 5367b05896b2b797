"""`raft report` on a fake sweep in the real run-folder format: 2 values of K x 2 seeds."""

import csv
import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from raft.report import main
from raft.trackers.tracking import Tracker

# (K, seed) -> after-evaluation values; the start evaluation depends on the seed only.
AFTER = {
    (4, 0): dict(
        reward=1.0,
        ppl=4.0,
        msttr_100=0.60,
        distinct_1=0.030,
        distinct_2=0.25,
        unique_1=100,
        unique_2=900,
        length=50.0,
        n=64,
    ),
    (4, 1): dict(
        reward=2.0,
        ppl=4.2,
        msttr_100=0.62,
        distinct_1=0.034,
        distinct_2=0.27,
        unique_1=110,
        unique_2=1000,
        length=54.0,
        n=64,
    ),
    (8, 0): dict(
        reward=2.0,
        ppl=3.9,
        msttr_100=0.58,
        distinct_1=0.028,
        distinct_2=0.22,
        unique_1=90,
        unique_2=800,
        length=60.0,
        n=64,
    ),
    (8, 1): dict(
        reward=2.4,
        ppl=3.9,
        msttr_100=0.58,
        distinct_1=0.028,
        distinct_2=0.24,
        unique_1=96,
        unique_2=820,
        length=62.0,
        n=64,
    ),
}
BEFORE = {
    0: dict(
        reward=0.5,
        ppl=3.5,
        msttr_100=0.6,
        distinct_1=0.03,
        distinct_2=0.25,
        unique_1=80,
        unique_2=700,
        length=40.0,
        n=64,
    ),
    1: dict(
        reward=0.7,
        ppl=3.5,
        msttr_100=0.6,
        distinct_1=0.03,
        distinct_2=0.25,
        unique_1=84,
        unique_2=720,
        length=42.0,
        n=64,
    ),
}


def write_run(folder, K, seed, evaluation=True, beta=None):
    config = {
        "name": "sweep",
        "seed": seed,
        "model": {"name_or_path": "tiny-llama"},
        "sampler": {"_target_": "raft.sampling.sampler.Sampler", "K": K, "temperature": 1.0},
    }
    overrides = [f"sampler.K={K}", f"seed={seed}"] + ([f"selector.beta={beta}"] if beta is not None else [])
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    tracker = Tracker(folder)
    for it in range(3):
        tracker.log_iteration(
            {
                "iteration": it,
                "policy_reward": 0.5 + 0.1 * K * it + 0.1 * seed,
                "best_of_k_reward": 1.0 + 0.1 * K * it,
                "kl": 0.01 * it * K * (1 + 0.5 * seed),
                "eval_reward": 0.6 + 0.2 * it * K / 4,
                "eval_ppl": 3.5 + 0.1 * it,
                "eval_n": 64,
            }
        )
    tracker.close()
    if evaluation:
        (folder / "evaluation.json").write_text(json.dumps({"before": BEFORE[seed], "after": AFTER[(K, seed)]}))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun"
    for K in (8, 4):
        for seed in (0, 1):
            write_run(root / f"sampler.K={K},seed={seed}", K, seed)
    return root


def test_tables_mean_std_over_seeds(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {r["configuration"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert list(rows) == ["start: tiny-llama", "sampler.K=4", "sampler.K=8"]  # start first, then K=4 < K=8
    k4, k8, start = rows["sampler.K=4"], rows["sampler.K=8"], rows["start: tiny-llama"]
    # K=4: reward 1.0 and 2.0 -> mean 1.5, sample std sqrt((0.25 + 0.25) / 1) = 0.7071.
    assert float(k4["reward_mean"]) == pytest.approx(1.5) and float(k4["reward_std"]) == pytest.approx(0.5**0.5)
    # K=8: 2.0 and 2.4 -> 2.2 +- 0.2828; unique-1 90 and 96 -> 93 +- 4.243.
    assert float(k8["reward_mean"]) == pytest.approx(2.2) and float(k8["reward_std"]) == pytest.approx(0.08**0.5)
    assert float(k8["unique_1_mean"]) == 93 and float(k8["unique_1_std"]) == pytest.approx(18**0.5)
    # The start row: one evaluation per seed (the same for both K), 0.5 and 0.7.
    assert start["seeds"] == "2" and float(start["reward_mean"]) == pytest.approx(0.6)
    md = (out / "results.md").read_text()
    assert md in printed
    assert (
        "| sampler.K=4 | 2 | 1.500 ± 0.707 | 4.100 ± 0.141 | 0.610 ± 0.014 | 0.032 ± 0.003 | 0.260 ± 0.014 "
        "| 105.0 ± 7.1 | 950.0 ± 70.7 | 52.0 ± 2.8 | 64 | 1.000 ± 0.000 |" in md
    )  # best-of-K of iteration 0
    header = md.splitlines()[0]
    assert header == (
        "| Configuration | Seeds | Reward | PPL | MSTTR-100 | Distinct-1 | Distinct-2 | Unique-1 "
        "| Unique-2 | Length | n | Initial best-of-K |"
    )
    assert "n evaluated responses" in md
    tex = (out / "results.tex").read_text()
    assert r"sampler.K=4 & 2 & 1.500 $\pm$ 0.707" in tex and r"\toprule" in tex


def test_plots_are_real_images(sweep, tmp_path):
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out)]) == 0
    for name in ("reward_curve.png", "reward_vs_ppl.png", "kl_curve.png"):
        image = np.asarray(Image.open(out / name).convert("L"), dtype=float)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image.std() > 10  # not a blank canvas
        assert (out / name).stat().st_size > 20_000


def test_one_run_without_evaluation_json_uses_metrics_csv(tmp_path, capsys):
    run = tmp_path / "runs" / "selector.beta=0.01"
    write_run(run, 8, 0, evaluation=False, beta=0.01)
    assert main([str(run)]) == 0
    rows = list(csv.DictReader(open(run / "report" / "results.csv")))
    assert len(rows) == 1
    # Last metrics.csv row: eval_reward 0.6 + 0.2 * 2 * 8 / 4 = 1.4; marked as coming from metrics.csv.
    assert rows[0]["configuration"] == "sampler.K=8, selector.beta=0.01 *"
    assert float(rows[0]["reward_mean"]) == pytest.approx(1.4) and rows[0]["reward_std"] == ""
    assert math.isnan(float(rows[0]["msttr_100_mean"]))
    assert (run / "report" / "kl_curve.png").exists()


def test_kl_lines_are_labelled_by_the_differing_override(tmp_path):
    from raft.report.collect import find_runs, group_runs

    for beta in (0.1, 0.01):
        write_run(tmp_path / f"b{beta}", 8, 0, beta=beta)
    assert [g.label for g in group_runs(find_runs(tmp_path))] == ["selector.beta=0.01", "selector.beta=0.1"]


def test_a_sweep_grown_from_two_seeds_to_three_stays_one_configuration(tmp_path):
    from raft.report.collect import find_runs, group_runs

    for seed, seeds in ((0, 2), (1, 2), (2, 3)):  # seeds=2, then seeds=3 ran only the new seed
        folder = tmp_path / f"sampler.K=8,seed={seed}"
        write_run(folder, 8, seed % 2)
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides + [f"seeds={seeds}"]))
    groups = group_runs(find_runs(tmp_path))
    assert len(groups) == 1 and len(groups[0].runs) == 3


def test_empty_folder_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_image_runs_get_the_table8_layout(tmp_path, capsys):
    for seed, (before, after) in enumerate([(0.40, 0.50), (0.44, 0.60)]):
        folder = tmp_path / f"seed={seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        split = lambda value: {"legibility": {"mean": value, "std": 0.1, "n": 20}}  # noqa: E731
        (folder / "evaluation.json").write_text(
            json.dumps(
                {
                    "before": {"in_domain": split(before), "out_of_domain": split(before - 0.2)},
                    "after": {"in_domain": split(after), "out_of_domain": split(after - 0.2)},
                }
            )
        )
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| Configuration | Score | Seeds | in-domain before | in-domain RAFT | out-of-domain before |" in printed
    # in-domain after: 0.50 and 0.60 -> 0.550 ± 0.071; out-of-domain before: 0.20 and 0.24 -> 0.220 ± 0.028
    assert "| legibility | 2 | 0.420 ± 0.028 | 0.550 ± 0.071 | 0.220 ± 0.028 | 0.350 ± 0.071 |" in printed
    rows = list(csv.DictReader(open(tmp_path / "report" / "results.csv")))
    assert float(rows[0]["in_domain_after_mean"]) == pytest.approx(0.55)


def test_the_start_row_names_the_model_with_interpolations_resolved(tmp_path):
    from raft.report.collect import read_run

    write_run(tmp_path, 8, 0)
    config = yaml.safe_load((tmp_path / ".hydra" / "config.yaml").read_text())
    config.update(paper={"sft": "outputs/paper_mini/smollm2-sft"}, model={"name_or_path": "${paper.sft}/checkpoint"})
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_run(tmp_path).model == "outputs/paper_mini/smollm2-sft/checkpoint"


def test_the_best_stage_sits_next_to_the_last(tmp_path, capsys):
    """Section 4.2 reports the best stage: here iteration 1 (held-out reward 0.9) beats the last one (0.4)."""
    run = tmp_path / "runs" / "one"
    write_run(run, 4, 0)
    tracker = Tracker(run)
    for it, (reward, capped) in enumerate([(0.5, 0.9), (0.9, 0.5), (0.4, 0.2)]):
        tracker.log_iteration(
            {
                "iteration": it,
                "policy_reward": 0.1,
                "best_of_k_reward": 0.2,
                "eval_reward": reward,
                "eval_ppl": 3.0 + it,
                "eval_n": 64,
                "capped_share": capped,
            }
        )
    assert main([str(run), "--stage", "both"]) == 0
    rows = {r["configuration"]: r for r in csv.DictReader(open(run / "report" / "results.csv"))}
    best = rows["sampler.K=4 [best stage]"]
    assert best["stage"] == "best" and float(best["stage_mean"]) == 1 and float(best["reward_mean"]) == 0.9
    assert float(best["ppl_mean"]) == 4.0 and float(best["capped_share_mean"]) == 0.5
    assert float(rows["sampler.K=4"]["reward_mean"]) == 1.0  # the last stage, from evaluation.json
    assert main([str(run), "--stage", "best", "--out", str(tmp_path / "b")]) == 0
    assert [r["configuration"] for r in csv.DictReader(open(tmp_path / "b" / "results.csv"))] == [
        "start: tiny-llama",
        "sampler.K=4 [best stage]",
    ]
