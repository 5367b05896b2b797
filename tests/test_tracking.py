"""metrics.csv rows survive a resume; W&B offline logs metrics and a sample table; W&B errors never stop a run."""

import functools
import logging
import sys
import types

import pytest

from raft.sampling.samples import Sample
from raft.trackers.tracking import Tracker, read_metrics_csv
from raft.trackers.wandb_run import WandbRun


def wandb_tracker(run_dir, **settings):
    return Tracker(run_dir, backends={"wandb": functools.partial(WandbRun, **settings)})


def test_csv_union_of_columns_in_contract_order(tmp_path):
    tracker = Tracker(tmp_path)
    tracker.log_iteration({"iteration": 0, "best_of_k_reward": 1.5, "policy_reward": 0.5, "extra": 7})
    tracker.log_iteration({"iteration": 1, "policy_reward": 0.75, "best_of_k_reward": 2.0, "kl": 0.1})
    tracker.close()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "iteration,policy_reward,best_of_k_reward,kl,extra"
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["iteration"], r["policy_reward"], r["kl"], r["extra"]) for r in rows] == [
        ("0", "0.5", "", "7"),
        ("1", "0.75", "0.1", ""),
    ]


def test_resume_keeps_earlier_rows_and_replaces_a_rerun_iteration(tmp_path):
    first = Tracker(tmp_path)
    first.log_iteration({"iteration": 0, "policy_reward": 0.5})
    first.log_iteration({"iteration": 1, "policy_reward": 0.6})
    # Killed after iteration 1's row; the new process redoes iteration 1 and goes on.
    second = Tracker(tmp_path)
    second.log_iteration({"iteration": 1, "policy_reward": 0.7})
    second.log_iteration({"iteration": 2, "policy_reward": 0.9, "eval_reward": float("nan")})
    rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["iteration"], r["policy_reward"]) for r in rows] == [("0", "0.5"), ("1", "0.7"), ("2", "0.9")]
    assert rows[2]["eval_reward"] == "nan" and rows[0]["eval_reward"] == ""


def test_wandb_offline_run(tmp_path, monkeypatch, caplog):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    run_dir = tmp_path / "run"
    samples = [Sample(0, "hi", "hello there", reward=1.0), Sample(1, "bye", "good bye", reward=0.5)]
    with caplog.at_level(logging.INFO, logger="raft"):
        tracker = wandb_tracker(run_dir, project="raft-test", init_timeout=20)
    assert "wandb" in tracker.backends
    tracker.log_iteration({"iteration": 0, "policy_reward": 0.5, "eval_ppl": float("nan")}, samples)
    tracker.close()
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (
        f"W&B run offline (no API key found: `wandb login` to go online); upload it: wandb sync {runs[0]}"
        in caplog.text
    )
    assert (run_dir / "metrics.csv").exists() and (run_dir / "wandb_run_id.txt").exists()


def test_wandb_failures_fall_back_to_csv(tmp_path, monkeypatch, caplog):
    broken = types.ModuleType("wandb")

    class Settings:
        def __init__(self, **kwargs):
            pass

    class Run:
        offline, disabled, dir = True, False, str(tmp_path / "wandb" / "offline-run-x" / "files")

        def define_metric(self, *args, **kwargs):
            pass

        def log(self, *args, **kwargs):
            raise ConnectionError("service went away")

    modes = []

    def init(mode=None, **kwargs):
        modes.append(mode)
        if mode != "offline":
            raise TimeoutError("no answer")
        return Run()

    broken.Settings, broken.init, broken.Table, broken.teardown = Settings, init, lambda **kw: kw, lambda: None
    monkeypatch.setitem(sys.modules, "wandb", broken)
    with caplog.at_level(logging.WARNING, logger="raft"):
        tracker = wandb_tracker(tmp_path, mode="online")
        assert modes == ["online", "offline"]  # the online failure is retried offline
        tracker.log_iteration({"iteration": 0, "policy_reward": 1.0}, [Sample(0, "p", "r", reward=1.0)])
        tracker.log_iteration({"iteration": 1, "policy_reward": 2.0})
        tracker.close()
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 2
    assert sum("wandb disabled after an error" in r.message for r in caplog.records) == 1  # warned once


def test_logger_configs_are_partial(tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    make = instantiate(OmegaConf.load("raft/conf/logger/csv.yaml"))
    tracker = make(run_dir=tmp_path)
    tracker.log_iteration({"iteration": 0})
    assert (tmp_path / "metrics.csv").exists()
