"""Errors a user can act on: raft's own mid-run stops and Ctrl-C in one line that says how to resume; a user's
own code keeps its traceback; settings that cannot work together refused before any model loads."""

from __future__ import annotations

import functools
import json
import math

import pytest
from conftest import quiet_trainer
from test_loop import PROMPTS, make_loop

from raft.cli.main import run_to_the_end
from raft.rewards.base import Reward


class EveryDataPrompts:
    def prompts(self, split):
        return PROMPTS if split == "train" else PROMPTS[:2]

    def references(self, split):
        return None


class NaNOnSecondStage(Reward):
    """A reward whose scores turn non-finite in the second stage."""

    calls = 0

    def score_batch(self, prompts, responses):
        type(self).calls += 1
        return [math.nan if type(self).calls > 1 else 1.0 for _ in prompts]


class Raises(Reward):
    def __init__(self, error):
        self.error = error

    def score_batch(self, prompts, responses):
        raise self.error


def _stop(task, run_dir, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        run_to_the_end(task, run_dir)
    return stopped.value.code, capsys.readouterr().err


def test_a_rewards_non_finite_score_mid_run_is_one_line_that_says_how_to_resume(tmp_path, capsys):
    NaNOnSecondStage.calls = 0
    task = make_loop(tmp_path, reward=NaNOnSecondStage(), data=EveryDataPrompts())
    code, err = _stop(task, tmp_path, capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]  # after the progress bars, the one line raft prints
    assert (
        line.startswith("raft: stopped:")
        and "NaNOnSecondStage returned nan" in line
        and "run the same command again to resume" in line
    )
    assert json.loads((tmp_path / "iter_000" / "metrics.json").read_text())["iteration"] == 0  # kept


def test_ctrl_c_is_one_line_too(tmp_path, capsys):
    code, err = _stop(
        make_loop(tmp_path, reward=Raises(KeyboardInterrupt()), data=EveryDataPrompts()), tmp_path, capsys
    )
    assert code == 130 and "Ctrl-C" in err and "run the same command again to resume" in err
    assert "Traceback" not in err


def test_ctrl_c_inside_a_lightning_fit_is_a_keyboard_interrupt_and_ctrl_c_works_again(tiny_lm_folder):
    import signal

    import pytorch_lightning as pl
    import torch

    from raft.trainer.fit import fit

    class Interrupted(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader([torch.ones(1)] * 2)

        def training_step(self, batch, batch_idx):
            raise KeyboardInterrupt

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(KeyboardInterrupt):  # Lightning itself would have called sys.exit(1)
        fit(quiet_trainer(max_epochs=1), Interrupted())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_users_own_reward_error_keeps_its_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError):
        run_to_the_end(make_loop(tmp_path, reward=Raises(ZeroDivisionError("mine")), data=EveryDataPrompts()), tmp_path)


def test_settings_that_cannot_work_together_are_refused_up_front(tmp_path):
    from raft.modules.ppo import PPOModule
    from raft.modules.reward_model import RewardModelModule
    from raft.sampling.sampler import Sampler

    for module, owner in ((PPOModule, "ppo"), (RewardModelModule, "reward_model")):
        with pytest.raises(ValueError, match=f"belongs to task={owner}"):
            make_loop(tmp_path, module=functools.partial(module))
    with pytest.raises(ValueError, match="sampler.max_new_tokens=96 leaves no room .* model.max_length=96"):
        make_loop(tmp_path, sampler=Sampler(K=2, max_new_tokens=96))


def test_a_reward_function_needing_columns_the_data_lacks_is_refused_up_front(tmp_path):
    from raft.data.prompt_table import PromptTable
    from raft.rewards.function import FunctionReward

    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": f"Q{i}", "topic": "t"}) + "\n" for i in range(4)))
    (tmp_path / "r.py").write_text("def score(prompts, completions, answer, **_):\n    return [0.0 for _ in prompts]\n")
    data = PromptTable(str(tmp_path / "p.jsonl"), n_test=1)
    with pytest.raises(ValueError, match=r"needs the column\(s\) \['answer'\].*they have \['topic'\]"):
        FunctionReward(f"{tmp_path / 'r.py'}:score", data=data)
