"""GRPO (Shao et al. 2024, DeepSeekMath) as a Lightning module: group-normalised advantages, PPO's clipped ratio.

Each response's advantage is its reward against the other responses to the same prompt,
A = (r - mean) / (std + eps) over the prompt's K samples (`scale_by_std=false`: only centred). The loss is the
token-level clipped surrogate of raft/modules/clipped_ratio.py, plus, when `kl_coef` > 0, kl_coef times the
k3 estimate of KL(pi_theta || pi_ref) per token, exp(ref - logp) - (ref - logp) - 1 (Schulman 2020), with the
reference's log-probs computed once when the fit starts and the reference freed before the first step.
`task=grpo` (raft/tasks/grpo.py) samples, scores and hands every sample to this module.
"""

from __future__ import annotations

from typing import Callable

import torch

from raft.modules.clipped_ratio import ClippedRatioModule
from raft.ppo.advantages import group_advantages
from raft.ppo.losses import MAX_LOG_RATIO
from raft.ppo.masked import masked_mean


class GRPOModule(ClippedRatioModule):
    stats_prefix = "grpo_"

    def __init__(
        self,
        model,
        rows: list[dict],
        pad_id: int,
        kl_coef: float = 0.0,
        scale_by_std: bool = True,
        eps: float = 1e-4,
        reference: Callable[[], torch.nn.Module] | None = None,  # loads the reference policy (bound by task=grpo)
        **clipped_ratio,
    ):
        super().__init__(model, rows, pad_id, **clipped_ratio)
        if kl_coef < 0:
            raise ValueError(f"module.kl_coef must be >= 0, got {kl_coef}")
        if eps <= 0:
            raise ValueError(f"module.eps must be > 0, got {eps}")
        if kl_coef > 0 and reference is None:
            raise ValueError("module.kl_coef > 0 needs a reference policy: run GRPO with task=grpo")
        missing = [i for i, r in enumerate(rows) if r.get("reward") is None or r.get("prompt_idx") is None]
        if missing:
            raise ValueError(f"GRPO needs each row's reward and prompt_idx; row {missing[0]} has none (score first)")
        self.kl_coef, self.scale_by_std, self.eps, self.reference = kl_coef, scale_by_std, eps, reference
        self.ref_logprobs: list[torch.Tensor] = []

    def advantages(self) -> torch.Tensor:
        rewards = torch.tensor([r["reward"] for r in self.rows], dtype=torch.float64)
        return group_advantages(rewards, [r["prompt_idx"] for r in self.rows], self.scale_by_std, self.eps)

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.kl_coef > 0:
            reference = self.reference()
            self.ref_logprobs = self.row_log_probs(reference)
            del reference  # only its log-probs are needed: one model in memory while training

    def extra_loss(self, logp: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict:
        if self.kl_coef == 0:
            return {}
        return {"kl_penalty": self.kl_coef * masked_mean(k3(logp, self.aligned(self.ref_logprobs, batch, logp)), mask)}

    def training_stats(self) -> dict[str, float]:
        advantages = self.row_advantages
        groups: dict[int, set] = {}
        for r in self.rows:
            groups.setdefault(r["prompt_idx"], set()).add(r["reward"])
        return {
            **super().training_stats(),
            "grpo_mean_abs_advantage": advantages.abs().mean().item(),
            "grpo_zero_variance_groups": sum(len(g) == 1 for g in groups.values()) / len(groups),
        }


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """exp(ref - logp) - (ref - logp) - 1 per token: an unbiased, non-negative estimate of KL(pi || ref)."""
    log_ratio = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(log_ratio) - log_ratio - 1
