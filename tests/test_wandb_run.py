"""One W&B run per raft run, read back from the offline run files: both stages' fine-tuning curves on one
continuing step axis, the iteration metrics, one sample table growing across iterations, a digits run's images,
no step repeated by a resumed run, and metrics.csv complete whatever W&B does."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import quiet_trainer
from pytorch_lightning import Callback
from run_outcome import TINY_DIGITS
from wandb_offline import offline_runs

from raft.modules.sft import SFTModule
from raft.policies.causal_lm import CausalLMPolicy
from raft.rewards.base import Reward
from raft.sampling.sampler import Sampler
from raft.selection.selectors import LocalRanking
from raft.tasks.raft import RaftTask
from raft.trackers.tracking import Tracker, read_metrics_csv
from raft.trackers.wandb_run import WandbRun

pytest.importorskip("wandb")
ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [f"Tell me about topic number {i}" for i in range(6)]


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    for key in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # staged artifacts, until a sync
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def strictly_increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.slow
def test_a_two_iteration_run_is_one_wandb_run_with_everything_in_it(tmp_path):
    args = ["model=tiny", "task.iterations=2", "task.batch_size=4", "sampler.max_new_tokens=6", "sampler.K=2"]
    args += ["evaluator.n_prompts=4", "evaluator.every=1", "trainer.max_epochs=1", "trainer.precision=32"]
    args += ["module.batch_size=2"]
    result = subprocess.run(
        [sys.executable, "-m", "raft", *args, "logger=wandb", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = offline_runs(tmp_path)  # one W&B run, in the run folder
    assert run.run_id == (tmp_path / "wandb_run_id.txt").read_text().strip()
    # the composed config, with the sweep fields on top; the group is the preset's name
    assert {k: run.config[k] for k in ("K", "lambda", "beta", "seed", "preset")} == {
        "K": 2,
        "lambda": 1.0,
        "beta": 0.0,
        "seed": 0,
        "preset": "default",
    }
    assert run.config["task"]["iterations"] == 2 and run.group == "default"

    # per-step curves of both stages (4 selected samples, batches of 2: 2 steps each) on one continuing axis
    steps = run.rows_with("train/loss")
    assert [r["trainer/iteration"] for r in steps] == [0, 0, 1, 1]
    assert strictly_increasing([r["trainer/global_step"] for r in steps])
    assert all(r["train/lr"] > 0 and r["train/grad_norm"] > 0 for r in steps)
    # the per-iteration metrics, as in metrics.csv
    iterations = run.rows_with("policy_reward")
    csv_rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [r["iteration"] for r in iterations] == [0, 1]
    for row, csv_row in zip(iterations, csv_rows):
        for key in ("policy_reward", "best_of_k_reward", "selected_distinct_2", "kl", "capped_share", "eval_reward"):
            assert row[key] == pytest.approx(float(csv_row[key]))
    # one table, two increments: every sample of both iterations, selected and rejected, with its reward
    assert [r["samples/increment_num"] for r in run.rows_with("samples/path")] == [0, 1]
    table = run.table_rows("samples")
    assert {row[0] for row in table} == {0, 1} and len(table) == 2 * 4 * 2  # iterations x prompts x K
    scored = [json.loads(line) for line in (tmp_path / "iter_001" / "scored.jsonl").read_text().splitlines()]
    assert sorted(row[5] for row in table if row[0] == 1) == sorted(s["reward"] for s in scored)
    assert sum(row[6] for row in table) == 2 * 4  # one selected per prompt
    # the end: the reward curve as an image, the before/after evaluation in the summary
    assert run.rows_with("figures/reward_curve/path")
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert run.summary["after/reward"] == pytest.approx(evaluation["after"]["reward"])


class LetterReward(Reward):
    def score_batch(self, prompts, responses):
        return [r.count("e") for r in responses]


class Prompts:
    def prompts(self, split):
        return PROMPTS

    def references(self, split):
        return None


class KillAtSecondBatch(Callback):
    """A kill in the middle of a stage: one step logged, the fit never finishes."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            raise RuntimeError("simulated kill")


def raft_task(run_dir, logger):
    return RaftTask(
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", max_length=96),
        reward=LetterReward(),
        sampler=Sampler(K=2, temperature=1.0, max_new_tokens=6, batch_size=12),
        selector=LocalRanking(),
        module=functools.partial(SFTModule, lr=1e-3, batch_size=2),
        trainer=quiet_trainer(max_epochs=1, log_every_n_steps=1),
        data=Prompts(),
        logger=logger,
        output_dir=run_dir,
        iterations=2,
        batch_size=4,
        seed=0,
    )


def test_a_resumed_offline_run_repeats_no_step(run_dir):
    import wandb

    logger = functools.partial(Tracker, backends={"wandb": functools.partial(WandbRun, project="raft-test")})
    first = raft_task(run_dir, logger)
    real_finetune = first.policy.finetune

    def finetune_killed_in_iteration_1(checkpoint, samples, out_dir, module, trainer):
        if checkpoint is not None:
            trainer = functools.partial(trainer, callbacks=[KillAtSecondBatch()])
        return real_finetune(checkpoint, samples, out_dir, module, trainer)

    first.policy.finetune = finetune_killed_in_iteration_1
    with pytest.raises(RuntimeError, match="simulated kill"):
        first.run()
    wandb.finish()  # what the killed process's W&B service would have flushed
    raft_task(run_dir, logger).run()  # the same command again: resumes in iteration 1's fine-tuning

    lives = offline_runs(run_dir)
    assert len(lives) == 2 and lives[0].run_id == lives[1].run_id  # `wandb sync` makes them one run
    history = [row for life in lives for row in life.history]
    assert strictly_increasing([row["_step"] for row in history])  # no step twice, in the order logged
    steps = [row for row in history if "train/loss" in row]
    assert [r["trainer/iteration"] for r in steps] == [0, 0, 1, 1, 1]  # the killed stage's one step, then its redo
    assert strictly_increasing([r["trainer/global_step"] for r in steps])
    assert [row["iteration"] for row in history if "policy_reward" in row] == [0, 1]  # iteration 0 not logged again
    assert len(read_metrics_csv(run_dir / "metrics.csv")) == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_service_or_an_unwritable_wandb_folder_leaves_metrics_csv_complete(tmp_path, monkeypatch):
    # online with a key, but nothing answers at the service's address: the run goes on offline
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    run_dir = tmp_path / "unreachable"
    tracker = Tracker(run_dir, backends={"wandb": functools.partial(WandbRun, init_timeout=5)})
    for t in range(2):
        tracker.log_iteration({"iteration": t, "policy_reward": 0.1 * t})
    tracker.close()
    assert len(read_metrics_csv(run_dir / "metrics.csv")) == 2
    (life,) = offline_runs(run_dir)
    assert [row["iteration"] for row in life.rows_with("policy_reward")] == [0, 1]

    # a W&B folder that cannot be written (as a full disk): W&B is dropped with a warning, the CSV goes on
    monkeypatch.setenv("WANDB_MODE", "offline")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("WANDB_DIR", str(locked))
    run_dir = tmp_path / "no_space"
    tracker = Tracker(run_dir, backends={"wandb": functools.partial(WandbRun, init_timeout=5)})
    for t in range(2):
        tracker.log_iteration({"iteration": t, "policy_reward": 0.1 * t})
    tracker.close()
    assert len(read_metrics_csv(run_dir / "metrics.csv")) == 2


@pytest.mark.slow
def test_a_digits_run_logs_its_images(tmp_path, run_dir):
    """task=diffusion_raft (the digits preset, shrunk as in test_diffusion.py) with logger=wandb."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import raft.cli.resolvers  # noqa: F401
    from raft.cli.main import CONFIG_DIR

    overrides = [
        *TINY_DIGITS,
        "logger=wandb",
        f"task.output_dir={run_dir}",
        f"model.pretrained_dir={tmp_path / 'pretrained'}",
        "trainer.callbacks=[]",
        "+trainer.enable_progress_bar=false",
        "task.iterations=2",
    ]
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    instantiate(cfg.task, _convert_="all").run()
    (run,) = offline_runs(run_dir)
    assert [r["trainer/iteration"] for r in run.rows_with("train_loss")] == [0, 0, 1, 1]  # the denoising loss
    images = run.rows_with("selected_images/count")
    assert [r["iteration"] for r in images] == [0, 1] and all(r["selected_images/count"] == 4 for r in images)
    table = run.table_rows("samples")
    assert {row[0] for row in table} == {0, 1}
    assert all(row[7]["_type"] == "image-file" and row[7]["path"] in run.artifact_entries("samples") for row in table)
    for split in ("in_domain", "out_of_domain"):  # the before/after grids, as images
        assert run.rows_with(f"figures/grid_{split}/path")


def test_raft_report_attaches_its_table_and_figures_to_the_sweeps_group(tmp_path):
    from test_report import write_run

    from raft.report import main

    sweep = tmp_path / "multirun"
    for K in (8, 4):
        for seed in (0, 1):
            write_run(sweep / f"sampler.K={K},seed={seed}", K, seed)
    out = tmp_path / "report"
    assert main([str(sweep), "--out", str(out), "--wandb"]) == 0
    (run,) = offline_runs(out)
    assert run.group == "sweep"  # the runs' `name`, which logger=wandb makes their group
    (table,) = [entries for name, entries in run.artifacts if name == "report-sweep"]
    assert {"results.md", "results.csv", "results.tex", "reward_curve.png"} <= set(table)
    (results,) = run.rows_with("report/results/path")
    rows = json.loads((run.folder / "files" / results["report/results/path"]).read_text())
    assert [row[0] for row in rows["data"]] == ["start: tiny-llama", "sampler.K=4", "sampler.K=8"]
    assert run.rows_with("report/reward_curve/path")


@pytest.mark.parametrize("logged_in", [True, False])
def test_a_user_logged_in_with_wandb_login_gets_an_online_run(tmp_path, logged_in):
    """`wandb login` keeps the key in ~/.netrc, not in WANDB_API_KEY. Asked in a fresh process: wandb keeps what
    it found for the whole process, and an online init would need the service."""
    port = closed_port()
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1:{port}\n  login user\n  password {'k' * 40}\n" if logged_in else "")
    netrc.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(netrc), WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_SILENT="true")
    env.update(WANDB_BASE_URL=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT))
    ask = "from raft.trackers.wandb_mode import chosen_mode; print(chosen_mode(None))"
    result = subprocess.run([sys.executable, "-c", ask], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == ("online" if logged_in else "offline")


def test_a_tracker_that_refuses_to_start_leaves_the_run_to_metrics_csv(tmp_path, caplog):
    # W&B's own check (tags of at most 64 characters) raises a ValueError, which once ended the run
    tracker = Tracker(tmp_path, backends={"wandb": functools.partial(WandbRun, tags=["x" * 65])})
    tracker.log_iteration({"iteration": 0, "policy_reward": 0.5})
    tracker.close()
    assert "logger wandb could not start (ValidationError" in caplog.text
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 1
