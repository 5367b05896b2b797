"""Fine-tuning on sampled responses through PPO's clipped importance ratio: the base of RAFT++ and GRPO.

It trains on a stage's rows as SFT does (same rows, left padding, response-window logits, optimiser and
schedule), but each response token's term is `min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)` with
rho = pi_theta / pi_old (Schulman et al. 2017). pi_old is the policy the stage starts from: its per-token
log-probs are computed once when the fit starts, under the trainer's precision and in eval mode, so the
first minibatch sees rho = 1 and later minibatches (more epochs, more minibatches) are held near it.
Sampling-time log-probs are not used: the sampler's temperature and bf16 weights make them another
distribution than the one being trained.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from raft.modules.fitting import finite
from raft.modules.sft import SFTModule, pad_batch, response_logits, token_log_probs
from raft.ppo.losses import policy_loss


class Minibatches(Dataset):
    """Item i is minibatch i (row indices) of `passes` permutations of n rows, each cut into minibatches of
    `size` (a minibatch never spans two passes). Drawn from the global generator, seeded per stage, so a
    resumed stage repeats them; a list of minibatches, so a distributed sampler can share them out."""

    def __init__(self, n: int, size: int, passes: int):
        self.n, self.size, self.passes = n, size, passes
        self.shuffle()

    def shuffle(self) -> None:
        self.batches: list[torch.Tensor] = []
        for _ in range(self.passes):
            order = torch.randperm(self.n)
            self.batches += [order[i : i + self.size] for i in range(0, self.n, self.size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batches[i]


class ClippedRatioModule(SFTModule):
    stats_prefix = "ratio_"  # of the statistics in the run's metrics

    def __init__(self, model, rows: list[dict], pad_id: int, clip_range: float = 0.2, ppo_epochs: int = 1, **sft):
        super().__init__(model, rows, pad_id, **sft)
        if not 0 < clip_range < 1:
            raise ValueError(f"module.clip_range must be in (0, 1), got {clip_range}")
        if ppo_epochs < 1:
            raise ValueError(f"module.ppo_epochs must be >= 1, got {ppo_epochs}")
        self.clip_range, self.ppo_epochs = clip_range, ppo_epochs
        self.row_advantages: torch.Tensor | None = None  # set when the fit starts
        self.old_logprobs: list[torch.Tensor] = []  # per row, aligned with its input_ids (0 off the response)
        self.step_stats: list[dict[str, float]] = []

    # -- what a subclass decides ---------------------------------------------------------------
    def advantages(self) -> torch.Tensor:
        """One advantage per row; every response token of the row gets it."""
        raise NotImplementedError

    def extra_loss(self, logp: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict:
        """Terms added to the clipped surrogate ({name: tensor}), e.g. GRPO's KL to the reference."""
        return {}

    # -- the fit -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.minibatches = Minibatches(len(self.rows), self.batch_size, self.ppo_epochs)
        return DataLoader(self.minibatches, batch_size=None, shuffle=False, collate_fn=self.collate)

    def on_train_epoch_start(self) -> None:
        if self.current_epoch > 0:  # trainer.max_epochs > 1 (RAFT++ in task=raft): new permutations, as SFT's
            self.minibatches.shuffle()

    def collate(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = pad_batch([self.rows[i] for i in index.tolist()], self.pad_id)
        batch["index"] = index
        return batch

    def on_train_start(self) -> None:
        self.row_advantages = self.advantages().float()
        self.old_logprobs = self.row_log_probs(self.model)

    @torch.no_grad()
    def row_log_probs(self, model) -> list[torch.Tensor]:
        """Per-token log-probs of every row under `model` (eval mode, the trainer's precision), on the CPU."""
        was_training = model.training
        model.eval()
        out: list[torch.Tensor] = []
        try:
            for start in range(0, len(self.rows), self.batch_size):
                rows = self.rows[start : start + self.batch_size]
                batch = {k: v.to(self.device) for k, v in pad_batch(rows, self.pad_id).items()}
                with self.precision():
                    logp, _ = token_log_probs(*response_logits(model, batch))
                full = torch.zeros(batch["input_ids"].shape, dtype=torch.float32)
                full[:, full.shape[1] - logp.shape[1] :] = logp.float().cpu()
                out += [full[i, full.shape[1] - len(r["input_ids"]) :] for i, r in enumerate(rows)]
        finally:
            model.train(was_training)
        return out

    def precision(self):
        """The autocast the trainer runs training steps under (none outside a fit)."""
        return self.trainer.precision_plugin.forward_context() if self._trainer is not None else nullcontext()

    def aligned(self, per_row: Sequence[torch.Tensor], batch: dict[str, torch.Tensor], like: torch.Tensor):
        """The batch's rows of `per_row` (vectors aligned with each row's ids), left-padded as the batch is and
        cut to the response window of `like` (the batch's per-token log-probs)."""
        width = batch["input_ids"].shape[1]
        full = torch.zeros((len(batch["index"]), width), dtype=torch.float32)
        for i, row in enumerate(batch["index"].tolist()):
            full[i, width - len(per_row[row]) :] = per_row[row]
        return full[:, width - like.shape[1] :].to(like.device)

    def training_step(self, batch, batch_idx):
        index = batch["index"]
        logp, mask = token_log_probs(*response_logits(self.model, batch))
        old = self.aligned(self.old_logprobs, batch, logp)
        advantages = self.row_advantages[index].to(logp.device).unsqueeze(1).expand_as(logp)
        surrogate = policy_loss(logp, old, advantages, mask, self.clip_range)
        extra = self.extra_loss(logp, mask, batch)
        loss = surrogate.loss + sum(extra.values())
        stats = {
            "loss": loss.item(),
            "clip_fraction": surrogate.clip_fraction.item(),
            "approx_kl": surrogate.approx_kl.item(),
            **{k: v.item() for k, v in extra.items()},
        }
        self.step_stats.append(stats)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(index))
        return finite(loss, self)

    def training_stats(self) -> dict[str, float]:
        """Means over the fit's optimiser steps (CausalLMPolicy.finetune saves them as training_stats.json)."""
        keys = self.step_stats[0] if self.step_stats else {}
        stats = {k: sum(s[k] for s in self.step_stats) / len(self.step_stats) for k in keys}
        return {f"{self.stats_prefix}{k}": v for k, v in {**stats, "steps": len(self.step_stats)}.items()}
