"""Supervised fine-tuning on (prompt, response) pairs: causal-LM loss on response tokens only.

Rows are left-padded, so every response ends at the right edge of its batch and the model computes
logits only for the window that holds the responses (`logits_to_keep`): with long prompts (HH-RLHF
dialogues, ~600 tokens) and a 49k vocabulary, full-sequence fp32 logits were most of a stage's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from raft.infra.forward import forward_takes
from raft.trainer import optimizer_state
from raft.trainer.fit import check_optimiser, finite
from raft.trainer.sharded_clipping import ShardedClipping

IGNORE = -100


def training_rows(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int) -> list[dict]:
    """Token ids of prompt + response, with labels masked (-100) over the prompt.

    The ids are used as given: the sampled ids (with the EOS only where the model emitted one), or a
    reference tokenised as the model would produce it. Over-long rows keep their end (the response).
    """
    rows = []
    for prompt_ids, response_ids in pairs:
        p, r = list(prompt_ids), list(response_ids)
        ids, labels = (p + r)[-max_length:], ([IGNORE] * len(p) + r)[-max_length:]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded ids, labels and attention mask: responses end at the right edge (see `response_logits`)."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), IGNORE)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, width - n :], labels[i, width - n :] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"])
        mask[i, width - n :] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def response_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over the batch's response window only: logits[:, j] predicts labels[:, j + 1].

    The window starts one position before the earliest labelled token, so each response token's
    logits are computed exactly once; the model's own head (soft-capping, scaling) produces them.
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    labelled = (labels != IGNORE).any(dim=0).nonzero()
    start = max(0, int(labelled[0]) - 1) if len(labelled) else ids.shape[1] - 1
    kwargs = {"logits_to_keep": ids.shape[1] - start} if forward_takes(model, "logits_to_keep") else {}
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: count from each row's first token
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits
    return logits, labels[:, ids.shape[1] - logits.shape[1] :]


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the unmasked (response) tokens."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each next token [B, W - 1] in float32, mask of the response tokens) from `response_logits`."""
    targets, mask = labels[:, 1:], labels[:, 1:] != IGNORE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1), mask


class SFTModule(ShardedClipping, pl.LightningModule):
    def __init__(
        self,
        model,
        rows: list[dict],
        pad_id: int,
        lr: float = 2e-5,
        weight_decay: float = 0.0,
        batch_size: int = 8,
        warmup_ratio: float = 0.0,
        scheduler: str = "linear",
        optimizer_state: str = "stage",
        optimizer_state_from: str | None = None,  # bound by the task: the previous stage's checkpoint folder
        optimizer_state_to: str | None = None,  # ... and this stage's, when optimizer_state is "run"
    ):
        super().__init__()
        self.check_arguments(locals())
        self.model, self.rows, self.pad_id = model, rows, pad_id
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.warmup_ratio, self.scheduler = warmup_ratio, scheduler
        self.optimizer_state, self.optimizer_state_from = optimizer_state, optimizer_state_from
        self.optimizer_state_to = optimizer_state_to

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The hyper-parameters' rules, also run before any model loads (raft/trainer/checks.py)."""
        check_optimiser(a)
        if a["batch_size"] < 1:
            raise ValueError(f"module.batch_size must be >= 1, got {a['batch_size']}")
        if not 0.0 <= a["warmup_ratio"] < 1.0:
            raise ValueError(f"module.warmup_ratio must be in [0, 1), got {a['warmup_ratio']}")
        if a["scheduler"] not in ("linear", "constant"):
            raise ValueError(f"module.scheduler must be 'linear' or 'constant', got '{a['scheduler']}'")
        optimizer_state.check_scope(a["optimizer_state"], a["scheduler"])

    def on_fit_start(self) -> None:
        if self.optimizer_state == "run":  # the optimiser exists now; its first step continues the last stage's
            optimizer_state.load(self.trainer, self.optimizer_state_from)

    def on_train_end(self) -> None:
        if self.optimizer_state == "run" and self.optimizer_state_to is not None:
            optimizer_state.save(self.trainer, Path(self.optimizer_state_to))

    def train_dataloader(self):
        return DataLoader(
            self.rows, batch_size=self.batch_size, shuffle=True, collate_fn=lambda rows: pad_batch(rows, self.pad_id)
        )

    def training_step(self, batch, batch_idx):
        loss = response_loss(*response_logits(self.model, batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return finite(loss, self)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(self.warmup_ratio * total)  # optimizer_state=run: the step counts over the run, warmup once

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if self.scheduler == "constant":
                return 1.0
            return max(0.0, (total - step) / max(1, total - warmup))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
