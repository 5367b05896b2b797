"""Masked reductions that stay finite: empty masks give 0 and masked-out inf/NaN never leak in."""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # torch.where, not x * mask: inf * 0 is NaN, and padded positions may hold -inf log-probs.
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.bool().sum()
    return masked_sum(x, mask) / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over valid entries; 0 when fewer than two are valid."""
    count = mask.bool().sum()
    centred = x - masked_mean(x, mask)
    return masked_sum(centred**2, mask) / (count - 1).clamp(min=1)
