"""Reward model: Bradley-Terry loss, pairwise accuracy, a few training steps, save and load back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer

from raft.cli.resolvers import asset_path
from raft.data import Pair
from raft.modules.reward_model import RewardModelModule, bradley_terry_loss, pairwise_accuracy
from raft.rewards.model_files import load_backbone, save_reward_model, score_pairs
from raft.rewards.reward_model import TrainedRewardModel

HH = asset_path("hh_rlhf/harmless-base.jsonl.gz")  # the 2,015 harmless-base pairs shipped with raft

PAIRS = [
    Pair("\n\nHuman: How was your day?\n\nAssistant:", "It was wonderful, thank you!", "Terrible. Go away."),
    Pair("\n\nHuman: Can you help me cook rice?\n\nAssistant:", "Sure: simmer it gently with a lid.", "No."),
    Pair(
        "\n\nHuman: Write a note to a friend.\n\nAssistant:",
        "Thank you for your help with moving house.",
        "I hate that.",
    ),
    Pair("\n\nHuman: Any advice?\n\nAssistant:", "Practice a little every day.", "It is sad and bad."),
]


def test_bradley_terry_loss_by_hand():
    loss = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)  # 0.126928
    assert loss.item() == pytest.approx(0.126928, abs=1e-6)
    mean = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert mean.item() == pytest.approx((0.126928 + math.log(2)) / 2, abs=1e-6)
    assert math.isfinite(bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0])).item())


def test_pairwise_accuracy_counts_ties_as_wrong():
    assert pairwise_accuracy([1.0, 0.5, 2.0, 0.0], [0.0, 0.5, 3.0, -1.0]) == pytest.approx(0.5)


@pytest.fixture
def tiny_backbone(tiny_lm_folder):
    return tiny_lm_folder


def fit(module, steps: int):
    quiet_trainer(max_steps=steps, num_sanity_val_steps=0)().fit(module)


def toy_loss(module) -> float:
    module.eval()
    with torch.no_grad():
        batch = module.collate(PAIRS)
        chosen, rejected = module.model(**batch).logits[:, 0].chunk(2)
        return bradley_terry_loss(chosen, rejected).item()


def test_training_lowers_loss_and_scores_survive_save_load(tiny_backbone, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = load_backbone(str(tiny_backbone))
    module = RewardModelModule(model, tokenizer, PAIRS, PAIRS[:2], lr=3e-3, batch_size=4, max_length=64)
    before = toy_loss(module)
    fit(module, steps=8)
    after = toy_loss(module)
    assert after < before - 0.05, (before, after)

    chosen, rejected = score_pairs(module.model, tokenizer, PAIRS, batch_size=3, max_length=64)
    assert pairwise_accuracy(chosen, rejected) == 1.0
    save_reward_model(module.model, tokenizer, tmp_path / "rm", module.text_template, max_length=64)
    reward = TrainedRewardModel(str(tmp_path / "rm"), batch_size=2, baseline=0.5)
    loaded = reward([p.prompt for p in PAIRS], [p.chosen for p in PAIRS])
    assert loaded == pytest.approx([c - 0.5 for c in chosen], abs=1e-4)
    # A plain request (chat-style data) is scored in the dialogue layout the model was trained on.
    plain = reward(["How was your day?"], [PAIRS[0].chosen])
    assert plain == pytest.approx(loaded[:1], abs=1e-4)
    raw = TrainedRewardModel(str(tmp_path / "rm"), wrap_plain_prompts=False)(["How was your day?"], [PAIRS[0].chosen])
    assert raw != pytest.approx(plain, abs=1e-6)
    reward.close()


def test_lora_training_merges_into_a_plain_model(tiny_backbone, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = load_backbone(str(tiny_backbone))
    module = RewardModelModule(
        model, tokenizer, PAIRS, lr=3e-3, batch_size=4, max_length=64, lora_r=4, lora_alpha=8, lora_dropout=0.0
    )
    trainable = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in module.model.parameters()) / 2
    fit(module, steps=3)
    chosen, _ = score_pairs(module.model, tokenizer, PAIRS, batch_size=4, max_length=64)
    save_reward_model(module.model, tokenizer, tmp_path / "rm", module.text_template, max_length=64)
    assert not (tmp_path / "rm" / "adapter_config.json").exists()
    loaded = TrainedRewardModel(str(tmp_path / "rm"))([p.prompt for p in PAIRS], [p.chosen for p in PAIRS])
    assert loaded == pytest.approx(chosen, abs=1e-4)


def test_trained_reward_model_needs_a_saved_folder(tmp_path):
    with pytest.raises(ValueError, match="reward.path=.* is not a reward model"):
        TrainedRewardModel(str(tmp_path))


def test_reward_model_task_trains_reports_saves_and_resumes(tiny_backbone, tmp_path, capsys):
    from functools import partial

    from raft.data import PreferencePairs
    from raft.tasks.reward_model import RewardModelTask

    data = PreferencePairs(str(HH), max_train=8, max_test=6, max_prompt_chars=300)
    module = partial(RewardModelModule, lr=1e-3, batch_size=4, max_length=96)
    trainer = quiet_trainer(max_steps=2, max_epochs=1)  # max_epochs: what task=reward_model's trainer sets
    out = tmp_path / "rm"
    task = RewardModelTask(data, str(tiny_backbone), module, trainer, str(out))
    metrics = task.run()
    assert metrics["test_pairs"] == 6 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert f"held-out pairwise accuracy {metrics['test_accuracy']:.3f} on 6 pairs" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not list(tmp_path.glob(".*partial"))

    again = RewardModelTask(data, str(tiny_backbone), module, trainer, str(out)).run()
    assert again == metrics and "skipping training" in capsys.readouterr().out

    # with a tracker: the training curves reach the run folder above the model's
    from raft.trackers.tracking import Tracker

    logged = tmp_path / "tracked" / "rm"
    RewardModelTask(
        data,
        str(tiny_backbone),
        module,
        quiet_trainer(max_steps=2, max_epochs=1, log_every_n_steps=1),
        str(logged),
        logger=Tracker,
    ).run()
    curves = (logged.parent / "train_steps.csv").read_text()
    assert "train/loss" in curves and "train/accuracy" in curves and "train/grad_norm" in curves

    # The saved model reproduces the reported accuracy through the reward interface.
    test = data.pairs("test")
    reward = TrainedRewardModel(str(out))
    chosen = reward([p.prompt for p in test], [p.chosen for p in test])
    rejected = reward([p.prompt for p in test], [p.rejected for p in test])
    assert pairwise_accuracy(chosen, rejected) == pytest.approx(metrics["test_accuracy"])


def test_reward_model_task_rejects_a_bad_backbone(tmp_path):
    from raft.tasks.reward_model import RewardModelTask

    with pytest.raises(ValueError, match="task.backbone"):
        RewardModelTask(None, "not a model", None, None, str(tmp_path / "rm"))


def test_task_config_composes_with_its_data_and_module():
    """`raft task=reward_model` switches data and module (needs `task` after them in config.yaml's defaults)."""
    from hydra import compose, initialize_config_dir

    import raft.cli.resolvers  # noqa: F401

    conf = Path(__file__).resolve().parents[1] / "raft" / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["task=reward_model"])
    assert cfg.task._target_ == "raft.tasks.reward_model.RewardModelTask"
    assert cfg.task.data._target_ == "raft.data.sources.PreferencePairs"
    assert cfg.task.module._target_ == "raft.modules.reward_model.RewardModelModule"
    assert cfg.task.module.lr == 5e-6 and cfg.task.module.batch_size == 16 and cfg.task.trainer.max_epochs == 1
