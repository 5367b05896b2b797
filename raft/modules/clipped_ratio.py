"""Fine-tuning on sampled responses through PPO's clipped importance ratio: the base of RAFT++ and GRPO.

It trains on a stage's rows as SFT does (same rows, left padding, response-window logits, optimiser and
schedule), but each response token's term is `min(rho * A, clip(rho, 1 - eps, 1 + eps) * A)` with
rho = pi_theta / pi_old (Schulman et al. 2017). pi_old is the policy the stage starts from: its per-token
log-probs are computed once when the fit starts, under the trainer's precision and in eval mode, so the
first minibatch sees rho = 1 and later minibatches (more epochs, more minibatches) are held near it.
Both are taken at the sampling temperature (`temperature`, the sampler's lambda: logits / lambda), the
distribution the responses were drawn from, as TRL's GRPO does; sampling-time log-probs are not used (bf16
sampling weights make them another distribution than the one being trained).

With `kl_coef` > 0 each token's term also gets kl_coef times the k3 estimate of KL(pi_theta || pi_ref),
exp(ref - logp) - (ref - logp) - 1 (Schulman 2020), the reference's log-probs computed once when the fit
starts and the reference freed before the first step. The per-token terms become one loss per optimiser step
as `loss_type` says (raft/modules/loss_aggregation.py).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from raft.modules.loss_aggregation import StepNormaliser, check_loss_type, response_tokens
from raft.modules.rl.losses import MAX_LOG_RATIO, clipped_surrogate
from raft.modules.rl.masked import masked_mean
from raft.modules.sft import SFTModule, pad_batch, response_logits, token_log_probs
from raft.modules.traits import MethodTraits
from raft.trainer.fit import finite


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
    traits = MethodTraits(takes_reference=True)  # `reference` loads the initial policy when kl_coef > 0

    def __init__(
        self,
        model,
        rows: list[dict],
        pad_id: int,
        clip_range: float = 0.2,
        ppo_epochs: int = 1,
        temperature: float = 1.0,
        loss_type: str = "dapo",
        max_completion_length: int | None = None,
        kl_coef: float = 0.0,
        reference: Callable[[], torch.nn.Module] | None = None,
        **sft,
    ):
        super().__init__(model, rows, pad_id, **sft)
        if not 0 < clip_range < 1:
            raise ValueError(f"module.clip_range must be in (0, 1), got {clip_range}")
        if ppo_epochs < 1:
            raise ValueError(f"module.ppo_epochs must be >= 1, got {ppo_epochs}")
        if not temperature > 0:
            raise ValueError(f"module.temperature must be > 0 (the sampler's lambda), got {temperature}")
        check_loss_type(loss_type, max_completion_length)
        if kl_coef < 0:
            raise ValueError(f"module.kl_coef must be >= 0, got {kl_coef}")
        if kl_coef > 0 and reference is None:
            raise ValueError("module.kl_coef > 0 needs a reference policy (the task binds it: task=raft or grpo)")
        self.clip_range, self.ppo_epochs, self.temperature = clip_range, ppo_epochs, temperature
        self.loss_type, self.max_completion_length = loss_type, max_completion_length
        self.kl_coef, self.reference = kl_coef, reference
        self.row_advantages: torch.Tensor | None = None  # set when the fit starts
        self.old_logprobs: list[torch.Tensor] = []  # per row, aligned with its input_ids (0 off the response)
        self.ref_logprobs: list[torch.Tensor] = []  # the same under the reference, when kl_coef > 0
        self.step_stats: list[dict[str, float]] = []  # one per micro-batch
        self.optimizer_steps = 0
        self.normaliser: StepNormaliser | None = None  # the current epoch's, set when it starts

    # -- what a subclass decides ---------------------------------------------------------------
    def advantages(self) -> torch.Tensor:
        """One advantage per row; every response token of the row gets it."""
        raise NotImplementedError

    # -- the fit -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.minibatches = Minibatches(len(self.rows), self.batch_size, self.ppo_epochs)
        return DataLoader(self.minibatches, batch_size=None, shuffle=False, collate_fn=self.collate)

    def on_train_epoch_start(self) -> None:
        if self.current_epoch > 0:  # trainer.max_epochs > 1 (RAFT++ in task=raft): new permutations, as SFT's
            self.minibatches.shuffle()
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        self.normaliser = StepNormaliser(self.minibatches.batches, [response_tokens(r) for r in self.rows], accumulate)

    def collate(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = pad_batch([self.rows[i] for i in index.tolist()], self.pad_id)
        batch["index"] = index
        return batch

    def on_train_start(self) -> None:
        super().on_train_start()
        self.row_advantages = self.advantages().float()
        self.old_logprobs = self.row_log_probs(self.model)
        if self.kl_coef > 0:
            reference = self.reference()
            self.ref_logprobs = self.row_log_probs(reference)
            del reference  # only its log-probs are needed: one model in memory while training

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
                    logp, _ = self.token_log_probs(model, batch)
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

    def token_log_probs(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of the batch's responses at the sampling temperature, and their mask."""
        logits, labels = response_logits(model, batch)
        return token_log_probs(logits / self.temperature, labels)

    def training_step(self, batch, batch_idx):
        index = batch["index"]
        logp, mask = self.token_log_probs(self.model, batch)
        old = self.aligned(self.old_logprobs, batch, logp)
        advantages = self.row_advantages[index].to(logp.device).unsqueeze(1).expand_as(logp)
        per_token, was_clipped, ratio = clipped_surrogate(logp, old, advantages, self.clip_range)
        stats = {}
        if self.kl_coef > 0:
            kl = k3(logp, self.aligned(self.ref_logprobs, batch, logp))
            per_token = per_token + self.kl_coef * kl
            stats["kl_penalty"] = self.kl_coef * masked_mean(kl, mask).item()
        normaliser = self.normaliser
        if normaliser is None:  # outside a fit (a single step taken by hand): the step is this micro-batch
            normaliser, batch_idx = StepNormaliser([index], [response_tokens(r) for r in self.rows], 1), 0
        loss = normaliser.loss(per_token, mask, batch_idx, self.loss_type, self.max_completion_length)
        with torch.no_grad():
            stats = {
                "loss": loss.item(),
                "clip_fraction": masked_mean(was_clipped.float(), mask).item(),
                "approx_kl": masked_mean((ratio - 1.0) - torch.log(ratio), mask).item(),
                **stats,
            }
        self.step_stats.append(stats)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(index))
        return finite(loss, self)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.optimizer_steps += 1

    def training_stats(self) -> dict[str, float]:
        """Means over the fit's micro-batches, and how many micro-batches and optimiser steps it took (the stage
        saves them as training_stats.json)."""
        keys = self.step_stats[0] if self.step_stats else {}
        stats = {k: sum(s[k] for s in self.step_stats) / len(self.step_stats) for k in keys}
        counts = {"micro_batches": len(self.step_stats), "optimizer_steps": self.optimizer_steps}
        return {f"{self.stats_prefix}{k}": v for k, v in {**stats, **counts}.items()}


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """exp(ref - logp) - (ref - logp) - 1 per token: an unbiased, non-negative estimate of KL(pi || ref)."""
    log_ratio = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(log_ratio) - log_ratio - 1
