"""logger=tensorboard and logger=mlflow: Lightning's loggers fed by the tracker, the same step axis as W&B's;
a tracker whose package is missing says in one line what to install, and the run goes on with metrics.csv."""

from __future__ import annotations

import importlib.util
import logging
import struct

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from raft.cli.main import CONFIG_DIR
from raft.trackers.tracking import read_metrics_csv


def logger_partial(option: str):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return instantiate(compose("config", overrides=[f"logger={option}"]).logger, _convert_="all")


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the event files in `folder` (TFRecords: length, its crc, an Event, its crc)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def feed(tracker) -> None:
    """What a run sends: iteration 0's stage (two steps), its metrics, iteration 1's stage, its metrics."""
    for t in range(2):
        build = tracker.trainer(lambda **kw: kw, t)  # the Trainer's arguments, to reach the stage's logger
        stage_logger = build()["logger"]
        for step in range(2):
            stage_logger.log_metrics({"train/loss": 1.0 / (1 + step + 2 * t), "epoch": 0}, step=step)
        tracker.log_iteration({"iteration": t, "policy_reward": 0.5 + t})
    tracker.close()


def test_tensorboard_gets_the_curves_on_the_runs_step_axis(tmp_path):
    pytest.importorskip("tensorboardX")
    tracker = logger_partial("tensorboard")(run_dir=tmp_path)
    assert "tensorboard" in tracker.backends
    feed(tracker)
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars["train/loss"] == [(0, 1.0), (1, 0.5), (3, pytest.approx(1 / 3)), (4, 0.25)]  # 2: iteration 0
    assert scalars["iteration/policy_reward"] == [(2, 0.5), (5, 1.5)]
    assert "epoch" not in scalars
    lines = (tmp_path / "train_steps.csv").read_text().splitlines()
    assert lines[0] == "step,iteration,metric,value" and len(lines) == 1 + 4
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 2


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_a_tracker_without_its_package_says_what_to_install(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="raft"):
        tracker = logger_partial("mlflow")(run_dir=tmp_path)
        feed(tracker)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "pip install 'raft-align[mlflow]'" in warning and "\n" not in warning
    assert len(read_metrics_csv(tmp_path / "metrics.csv")) == 2


def test_an_sft_task_sends_its_curves_to_its_folders_tracker(tmp_path):
    import functools

    from conftest import quiet_trainer

    from raft.cli.resolvers import asset_path
    from raft.data import PreferencePairs
    from raft.modules.sft import SFTModule
    from raft.policies.causal_lm import CausalLMPolicy
    from raft.tasks.sft import SFTTask
    from raft.trackers.tracking import Tracker

    task = SFTTask(
        policy=CausalLMPolicy("tiny-llama", sample_dtype="float32", max_length=96),
        data=PreferencePairs(asset_path("hh_rlhf/harmless-base.jsonl.gz"), max_train=8, max_test=2),
        module=functools.partial(SFTModule, lr=1e-3, batch_size=4),
        trainer=quiet_trainer(max_steps=2, max_epochs=1, log_every_n_steps=1),
        output_dir=str(tmp_path / "sft"),
        logger=Tracker,
    )
    assert (task.run() / "config.json").is_file()
    rows = (tmp_path / "sft" / "train_steps.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:] if ",train/loss," in r] == ["0", "1"]


def test_mlflow_gets_the_curves_and_a_resumed_run_continues_its_mlflow_run(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "reward_curve.png")  # the run's figure, logged at the end
    feed(logger_partial("mlflow")(run_dir=tmp_path))
    run_id = (tmp_path / "mlflow_run_id.txt").read_text().strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")]
    assert history == [(0, 1.0), (1, 0.5), (3, pytest.approx(1 / 3)), (4, 0.25)]
    again = logger_partial("mlflow")(run_dir=tmp_path)  # the same folder again: the same MLflow run
    again.log_iteration({"iteration": 2, "policy_reward": 3.0})
    again.close()
    rewards = [(m.step, m.value) for m in client.get_metric_history(run_id, "iteration/policy_reward")]
    assert rewards == [(2, 0.5), (5, 1.5), (7, 3.0)]  # 6: the first life's close
    assert [a.path for a in client.list_artifacts(run_id)] == ["reward_curve.png"]
    assert (tmp_path / "mlflow_artifacts").is_dir()  # in the run folder, not the working directory
