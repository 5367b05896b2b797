"""Per-token PPO rewards: a KL penalty on every response token, the scalar score on the last one."""

from __future__ import annotations

import torch


def kl_shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    baseline: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (rewards, kl), both [batch, T] and 0 on padding.

    kl_t = log p(y_t) - log p_ref(y_t) (the sampled-token estimate of Ziegler et al. 2019);
    rewards_t = -kl_coef * kl_t, plus (score - baseline) at the row's last valid token. The baseline
    recentres the reward model so the initial policy scores about 0 (paper, appendix A.1).
    A row with no valid token gets no reward at all.
    """
    valid = mask.bool()
    kl = torch.where(valid, logprobs - ref_logprobs, torch.zeros_like(logprobs))
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(valid)
    last = torch.where(valid, positions, torch.full_like(positions, -1)).max(dim=1).values
    has_tokens = (last >= 0).to(rewards.dtype)
    last = last.clamp(min=0)
    bonus = (scores.to(rewards.dtype) - baseline) * has_tokens
    rewards = rewards.scatter_add(1, last.unsqueeze(1), bonus.unsqueeze(1))
    return rewards, kl
