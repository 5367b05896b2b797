"""The end of a run's summary (the before/after table) reaches Hydra's main.log as well as the console, once."""

from __future__ import annotations

import io
import logging
import logging.config
from pathlib import Path

import hydra
import pytest
import yaml

from raft.tasks.summary import print_before_after

BEFORE, AFTER = {"reward": 0.25, "n": 4}, {"reward": 0.75, "n": 4}
HISTORY = [{"iteration": 0, "policy_reward": 0.2, "best_of_k_reward": 0.5}]


@pytest.fixture
def hydra_logging(tmp_path):
    """Hydra's own job logging config, as a Hydra run has it: its console (here a buffer) and <run>/main.log."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    config = yaml.safe_load((Path(hydra.__file__).parent / "conf/hydra/job_logging/default.yaml").read_text())
    config["handlers"]["file"]["filename"] = str(tmp_path / "main.log")
    config["handlers"]["console"]["stream"] = console = io.StringIO()
    logging.config.dictConfig(config)
    yield console, tmp_path / "main.log"
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_the_before_after_table_is_in_main_log_and_on_the_console_once(hydra_logging, tmp_path, capsys):
    console, main_log = hydra_logging
    print_before_after(BEFORE, AFTER, HISTORY, tmp_path)
    assert "Before/after" not in capsys.readouterr().out  # not printed besides
    assert console.getvalue().count("Before/after on 4 held-out prompts:") == 1
    log = main_log.read_text()
    assert "Before/after on 4 held-out prompts:" in log and "|     0.250 |     0.750 |" in log
    assert f"run folder: {tmp_path}" in log


def test_without_logging_set_up_the_table_is_printed(tmp_path, capsys, monkeypatch):
    import logging

    for name in ("", "raft"):  # handlers an earlier test (a Hydra run in this process) left behind
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    monkeypatch.setattr(logging.getLogger("raft"), "propagate", True)
    print_before_after(BEFORE, AFTER, HISTORY, tmp_path)
    assert capsys.readouterr().out.count("Before/after on 4 held-out prompts:") == 1
