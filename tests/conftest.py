"""Fixtures shared by the test files: quiet Lightning Trainers, a tiny causal-LM folder, run folders."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl

QUIET = {
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet_trainer(**settings) -> functools.partial:
    """A Trainer partial on the CPU that logs, saves and prints nothing of its own; `settings` add to it or
    replace its keys (e.g. quiet_trainer(max_steps=2), quiet_trainer(enable_progress_bar=True))."""
    return functools.partial(pl.Trainer, **{**QUIET, **settings})


@pytest.fixture(name="quiet_trainer")
def quiet_trainer_fixture():
    """`quiet_trainer` as a fixture, for tests that take their helpers as arguments."""
    return quiet_trainer


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory):
    """A random-weight Llama and its small tokenizer saved as a model folder (raft.policies.models)."""
    from raft.policies.models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture
def run_dir(tmp_path):
    """A run folder that does not exist yet, as the loop and the tasks expect it."""
    return tmp_path / "run"
