"""Advantages: generalised advantage estimation over response tokens (Schulman et al. 2016) for PPO, and
GRPO's group-normalised rewards (Shao et al. 2024)."""

from __future__ import annotations

from typing import Sequence

import torch

from raft.modules.rl.masked import masked_mean, masked_var


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, both [batch, T], zero where `mask` is 0.

    `rewards`, `values` and `mask` are [batch, T] over response tokens. The valid tokens of a row are
    one contiguous run; the token after the last valid one is terminal (its value counts as 0), so
    padding after an EOS never bootstraps into the return.
    """
    if not (rewards.shape == values.shape == mask.shape):
        raise ValueError(f"gae: shapes differ: rewards {rewards.shape}, values {values.shape}, mask {mask.shape}")
    valid = mask.to(values.dtype)
    rewards = torch.where(mask.bool(), rewards, torch.zeros_like(rewards))
    values = torch.where(mask.bool(), values, torch.zeros_like(values))
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    steps = values.shape[1]
    for t in reversed(range(steps)):
        next_valid = valid[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        next_value = values[:, t + 1] * next_valid if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * next_valid * running
        advantages[:, t] = running * valid[:, t]
    returns = (advantages + values) * valid
    return advantages, returns


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise `x` to zero mean and unit variance over the valid tokens only; padding becomes 0."""
    mean = masked_mean(x, mask)
    out = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(mask.bool(), out, torch.zeros_like(out))


def group_advantages(
    rewards: torch.Tensor, groups: Sequence[int], scale_by_std: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """GRPO's advantage per response: (r - mean of its prompt's rewards) / (std of them + eps).

    `groups[i]` is response i's prompt index. The std is the sample std (Bessel-corrected, as TRL's GRPO);
    `scale_by_std=False` only centres (Dr. GRPO, Liu et al. 2025). A prompt whose rewards are all equal,
    or that has one response, gives 0 to each of its responses.
    """
    rewards = rewards.double()  # equal rewards centre to exactly 0
    _, group = torch.unique(torch.as_tensor(list(groups)), return_inverse=True)
    n = torch.zeros(len(rewards), dtype=rewards.dtype).index_add_(0, group, torch.ones_like(rewards))
    mean = torch.zeros_like(n).index_add_(0, group, rewards) / n.clamp(min=1)
    centred = rewards - mean[group]
    std = (torch.zeros_like(n).index_add_(0, group, centred**2) / (n - 1).clamp(min=1)).sqrt()
    advantages = centred / (std[group] + eps) if scale_by_std else centred
    return torch.where(n[group] > 1, advantages, torch.zeros_like(advantages)).float()
