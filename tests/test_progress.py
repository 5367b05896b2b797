"""Progress that says where a run is: bars named by iteration and stage, an ETA, model loading quiet."""

from __future__ import annotations

import logging

from conftest import quiet_trainer
from test_loop import PROMPTS, make_loop

from raft.infra import progress
from raft.infra.progress import StageProgressBar


def test_each_bar_names_its_iteration_and_stage_and_the_log_gives_an_eta(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="raft")
    trainer = quiet_trainer(max_epochs=1, enable_progress_bar=True, callbacks=[StageProgressBar(refresh_rate=1)])
    make_loop(tmp_path, trainer=trainer).run_iterations(PROMPTS)
    shown = capsys.readouterr()
    bars = shown.err + shown.out  # raft's bars on stderr, Lightning's on stdout
    for text in ("iteration 1/2 · sampling", "iteration 2/2 · KL samples", "iteration 2/2 · fine-tuning, epoch 1/1"):
        assert text in bars
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iteration ")]
    assert "| ETA" in lines[0] and "ETA" not in lines[1]  # after the last iteration there is nothing left


def test_the_eta_is_the_mean_iteration_time_times_what_is_left():
    assert progress.eta(1, 4, 60.0) == "ETA 3 min" and progress.eta(2, 3, 40.0) == "ETA 20 s"
    assert progress.eta(0, 4, 0.0) == "" and progress.eta(4, 4, 100.0) == ""


def test_loading_a_model_draws_no_bar(capsys):
    from raft.policies.causal_lm import CausalLMPolicy

    progress.quiet_loading()
    CausalLMPolicy("tiny-llama", sample_dtype="float32", device="cpu").load(None)
    assert "Loading weights" not in capsys.readouterr().err
