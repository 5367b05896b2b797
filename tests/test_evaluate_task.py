"""task=evaluate composed from the real configs, on the tiny random-weight model and VADER reward."""

import json
import math

import pytest
from hydra import compose, initialize_config_dir

from raft.cli.main import CONFIG_DIR, ConfigError, build_task
from raft.sampling.samples import read_samples


def make_task(tmp_path, *overrides):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "task=evaluate",
                "model=tiny",
                "reward=vader",
                "data=everyday",
                f"task.output_dir={tmp_path}",
                "evaluator.n_prompts=3",
                "evaluator.sampler.max_new_tokens=6",
                *overrides,
            ],
        )
    return build_task(cfg)


def test_evaluate_initial_model(tmp_path, capsys):
    metrics = make_task(tmp_path).run()
    assert {"reward", "ppl", "msttr_100", "distinct_1", "distinct_2", "unique_1", "unique_2", "length", "n"} <= set(
        metrics
    )
    assert metrics["n"] == 3 and -1 <= metrics["reward"] <= 1
    assert math.isnan(metrics["ppl"])  # everyday prompts have no references
    assert len(read_samples(tmp_path / "eval_test" / "eval_samples.jsonl")) == 3
    assert json.loads((tmp_path / "evaluation.json").read_text())["after"]["n"] == 3
    out = capsys.readouterr().out
    assert "| Configuration | Seeds | Reward | PPL | MSTTR-100 |" in out and "initial model" in out


def test_missing_checkpoint_fails_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="task.checkpoint"):
        make_task(tmp_path, f"task.checkpoint={tmp_path / 'nope'}")


def test_dataset_rows_score_the_pairs_own_responses(tmp_path):
    from raft.rewards.vader import VaderSentiment

    chosen = make_task(tmp_path / "chosen", "data=hh_rlhf", "task.responses=chosen").run()
    rejected = make_task(tmp_path / "rejected", "data=hh_rlhf", "task.responses=rejected").run()
    for metrics in (chosen, rejected):
        assert metrics["n"] == 3 and math.isnan(metrics["ppl"])
    samples = read_samples(tmp_path / "chosen" / "eval_test" / "eval_samples.jsonl")
    assert chosen["reward"] == pytest.approx(sum(s.reward for s in samples) / 3)
    rescored = VaderSentiment()([s.prompt for s in samples], [s.response for s in samples])
    assert [s.reward for s in samples] == pytest.approx(rescored)  # the dataset's own text, scored as is
    assert chosen["reward"] != rejected["reward"]
    label = json.loads((tmp_path / "chosen" / "evaluation.json").read_text())["responses"]
    assert label == "dataset: chosen"


def test_dataset_rows_need_preference_pairs(tmp_path):
    with pytest.raises(ConfigError, match="task.responses=chosen needs preference-pair data"):
        make_task(tmp_path, "task.responses=chosen")
