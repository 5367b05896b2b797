"""How per-token policy-gradient losses become one loss per optimiser step, named as TRL's `loss_type` names them.

Lightning accumulates `trainer.accumulate_grad_batches` micro-batches into one optimiser step and divides each
micro-batch's loss by that number. Here each micro-batch's loss is instead its share of the whole accumulated
step's loss (Lightning's division undone), so a step's gradient does not depend on how it was cut:

- `grpo`: mean over the step's responses of each response's token mean (Shao et al. 2024).
- `bnpo`: token mean within each micro-batch, averaged over the micro-batches (TRL: "the local batch").
- `dr_grpo`: token sum over the step / (its responses x max_completion_length) (Liu et al. 2025, Dr. GRPO).
- `dapo`: token sum over the step / its tokens (Yu et al. 2025, DAPO; TRL's default).
"""

from __future__ import annotations

from typing import Sequence

import torch

from raft.modules.rl.masked import masked_sum
from raft.modules.sft import IGNORE

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def check_loss_type(loss_type: str, max_completion_length: int | None) -> None:
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"module.loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if loss_type == "dr_grpo" and not (max_completion_length and max_completion_length > 0):
        raise ValueError(
            f"module.loss_type=dr_grpo divides by module.max_completion_length, which must be > 0, "
            f"got {max_completion_length}"
        )


def response_tokens(row: dict) -> int:
    """The number of response tokens a row trains (its labelled positions after the first)."""
    return sum(label != IGNORE for label in row["labels"][1:])


class StepNormaliser:
    """Per optimiser step, the counts a micro-batch's loss is divided by, for one epoch's micro-batches."""

    def __init__(self, minibatches: Sequence[torch.Tensor], tokens: Sequence[int], accumulate: int):
        self.accumulate = accumulate
        self.windows: list[dict[str, int]] = []
        for start in range(0, len(minibatches), accumulate):
            window = minibatches[start : start + accumulate]
            self.windows.append(
                {
                    "responses": sum(len(b) for b in window),
                    "tokens": sum(tokens[i] for b in window for i in b.tolist()),
                    "micro_batches": len(window),
                }
            )

    def loss(
        self,
        per_token: torch.Tensor,
        mask: torch.Tensor,
        batch_idx: int,
        loss_type: str,
        max_completion_length: int | None = None,
    ) -> torch.Tensor:
        """Micro-batch `batch_idx`'s share of its step's loss, scaled so that Lightning's division cancels."""
        window = self.windows[batch_idx // self.accumulate]
        if loss_type == "grpo":
            per_response = masked_sum_rows(per_token, mask) / mask.sum(-1).clamp(min=1)
            share = per_response.sum() / window["responses"]
        elif loss_type == "bnpo":
            share = masked_sum(per_token, mask) / mask.sum().clamp(min=1) / window["micro_batches"]
        elif loss_type == "dr_grpo":
            share = masked_sum(per_token, mask) / (window["responses"] * max_completion_length)
        else:  # dapo
            share = masked_sum(per_token, mask) / max(1, window["tokens"])
        return share * self.accumulate


def masked_sum_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum(-1)
