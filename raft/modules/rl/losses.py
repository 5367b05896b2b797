"""The clipped PPO objectives (Schulman et al. 2017), as masked means over response tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raft.modules.rl.masked import masked_mean

# exp(20) ~ 5e8: far outside any clip range, yet finite, so an extreme ratio cannot make inf * 0 = NaN.
MAX_LOG_RATIO = 20.0


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of valid tokens whose clipped term was the one used
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new) over the minibatch
    entropy: torch.Tensor | None  # mean token entropy of the new policy, when logits were given


@dataclass
class ValueLoss:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    error: torch.Tensor  # mean squared error of the unclipped values against the returns


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position, [..., vocab] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def clipped_surrogate(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, clip_range: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per token: (max(-A r, -A clip(r, 1-eps, 1+eps)), whether the clipped term was used, r), r = p_new / p_old."""
    log_ratio = (logprobs - old_logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), clipped > unclipped, ratio


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
    logits: torch.Tensor | None = None,
) -> PolicyLoss:
    """The clipped surrogate averaged over valid tokens (PPO's token mean)."""
    per_token, was_clipped, ratio = clipped_surrogate(logprobs, old_logprobs, advantages, clip_range)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        clip_fraction = masked_mean(was_clipped.float(), mask)
        approx_kl = masked_mean((ratio - 1.0) - torch.log(ratio), mask)
        entropy = masked_mean(entropy_from_logits(logits), mask) if logits is not None else None
    return PolicyLoss(loss, clip_fraction, approx_kl, entropy)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float = 0.2,
) -> ValueLoss:
    """0.5 * max((v - R)^2, (v_clipped - R)^2), v_clipped kept within clip_range_value of the rollout value."""
    clipped_values = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_error > unclipped_error).float(), mask)
        error = masked_mean(unclipped_error, mask)
    return ValueLoss(loss, clip_fraction, error)
