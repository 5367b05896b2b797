"""A fine-tuning stage's Lightning logger: hands what the module logs (loss, learning rate, gradient norm, PPO's
and the reward model's statistics) to the run's tracker, on a step axis that continues across stages."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from pytorch_lightning import Callback
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only


class StageLogger(Logger):
    """Lightning's step counts from 0 in every fit; `offset` (the run's next free step when the stage starts)
    turns it into the run's step, so stage 2's first step follows stage 1's last."""

    def __init__(self, tracker: Any, iteration: int, offset: int):
        super().__init__()
        self.tracker, self.iteration, self.offset = tracker, iteration, offset

    @property
    def name(self) -> str:
        return "raft"

    @property
    def version(self) -> str:
        return f"iter_{self.iteration:03d}"

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        curves = {k: float(v) for k, v in metrics.items() if k != "epoch"}  # the stage's own epoch: noise on a run axis
        self.tracker.log_steps(curves, self.offset + (step or 0), self.iteration)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The run's composed config is the tracker's; a stage adds none of its own."""


class StageCurves(Callback):
    """Learning rate and gradient norm of every optimizer step, logged by the module: the norm before Lightning's
    clipping (`gradient_clip_val`); a module that clips itself first (PPO) shows its clipped norm."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grads = [p.grad.detach().float().norm() for p in params]
        if grads:
            pl_module.log("train/grad_norm", torch.stack(grads).norm(), on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("train/lr", float(optimizer.param_groups[0]["lr"]), on_step=True, on_epoch=False, batch_size=1)
