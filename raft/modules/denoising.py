"""The standard denoising loss (noise a clean input, predict the noise) as a Lightning module.

The policy hands over already-encoded inputs: VAE latents and text-encoder states for Stable Diffusion,
pixels and class labels for the digits model. The encoders are frozen, so encoding once up front is
exact and keeps them out of the training step and out of the optimizer.
"""

from __future__ import annotations

from typing import Any, Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from raft.trainer.fit import check_optimiser, finite
from raft.trainer.sharded_clipping import ShardedClipping


class DenoisingModule(ShardedClipping, pl.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        noise_scheduler: Any,
        inputs: torch.Tensor,
        conditions: dict[str, torch.Tensor],
        null_conditions: dict[str, torch.Tensor] | None = None,
        learning_rate: float = 3e-6,
        weight_decay: float = 1e-2,
        batch_size: int = 10,
        condition_dropout: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.check_arguments(locals())
        if condition_dropout > 0 and not null_conditions:
            raise ValueError("module.condition_dropout needs the policy's null condition (the unconditional input)")
        if len(inputs) == 0:
            raise ValueError("nothing to fine-tune on: no inputs")
        for name, value in conditions.items():
            if len(value) != len(inputs):
                raise ValueError(f"condition {name} has {len(value)} rows for {len(inputs)} inputs")
        self.model = model
        self.noise_scheduler = noise_scheduler
        self.inputs, self.conditions = inputs, conditions
        self.null_conditions = null_conditions or {}
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.batch_size, self.condition_dropout, self.seed = batch_size, condition_dropout, seed

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The hyper-parameters' rules, also run before any model loads (raft/trainer/checks.py)."""
        check_optimiser(a, lr="learning_rate")
        if a["batch_size"] < 1:
            raise ValueError(f"module.batch_size must be >= 1, got {a['batch_size']}")
        if not 0 <= a["condition_dropout"] < 1:
            raise ValueError(f"module.condition_dropout must be in [0, 1), got {a['condition_dropout']}")

    def train_dataloader(self) -> DataLoader:
        indices = TensorDataset(torch.arange(len(self.inputs)))
        order = torch.Generator().manual_seed(self.seed)
        return DataLoader(indices, batch_size=min(self.batch_size, len(self.inputs)), shuffle=True, generator=order)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Only what the policy left trainable: LoRA adapters for Stable Diffusion, all weights for digits.
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        # Fixed learning rate, as in the paper's diffusion experiments (AdamW, no schedule).
        return torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay)

    def _batch_conditions(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        cond = {k: v[idx].to(self.device) for k, v in self.conditions.items()}
        if self.condition_dropout > 0:
            # Keep the unconditional branch trained so classifier-free guidance stays meaningful.
            drop = torch.rand(len(idx), device=self.device) < self.condition_dropout
            for k, null in self.null_conditions.items():
                null = null.to(self.device).expand_as(cond[k])
                mask = drop.view(-1, *([1] * (cond[k].dim() - 1)))
                cond[k] = torch.where(mask, null, cond[k])
        return cond

    def denoising_loss(self, x0: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        sched = self.noise_scheduler
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),), device=x0.device)
        noisy = sched.add_noise(x0, noise, t)
        prediction = self.model(noisy, t, **cond).sample
        if sched.config.prediction_type == "epsilon":
            target = noise
        elif sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(x0, noise, t)
        else:
            raise ValueError(f"unsupported prediction_type {sched.config.prediction_type!r}")
        return F.mse_loss(prediction.float(), target.float())

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (idx,) = batch
        loss = self.denoising_loss(self.inputs[idx.cpu()].to(self.device), self._batch_conditions(idx.cpu()))
        self.log("train_loss", loss, prog_bar=True, batch_size=len(idx))
        return finite(loss, self)
