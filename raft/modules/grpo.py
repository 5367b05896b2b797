"""GRPO (Shao et al. 2024, DeepSeekMath) as a Lightning module: group-normalised advantages, PPO's clipped ratio.

Each response's advantage is its reward against the other responses to the same prompt,
A = (r - mean) / (std + eps) over the prompt's K samples (`scale_by_std=false`: only centred, as Dr. GRPO,
which pairs it with `loss_type=dr_grpo`). The loss is the token-level clipped surrogate of
raft/modules/clipped_ratio.py at the sampling temperature, with its optional k3 KL to the initial policy,
aggregated as `loss_type` says. `task=grpo` is `task=raft` with `selector=all` (every sample is trained on) and
this module; with `module.optimizer_state=run` (the default) AdamW's moments carry over the stages, as TRL's
one optimiser does.
"""

from __future__ import annotations

import torch

from raft.modules.clipped_ratio import ClippedRatioModule
from raft.modules.rl.advantages import group_advantages
from raft.modules.traits import MethodTraits


class GRPOModule(ClippedRatioModule):
    stats_prefix = "grpo_"
    # advantages compare a prompt's K (so K >= 2): a selector must keep all of them
    traits = MethodTraits(trains_on_every_sample=True, group_relative=True, takes_reference=True)

    def __init__(self, model, rows: list[dict], pad_id: int, scale_by_std: bool = True, eps: float = 1e-4, **ratio):
        super().__init__(model, rows, pad_id, **ratio)
        if eps <= 0:
            raise ValueError(f"module.eps must be > 0, got {eps}")
        missing = [i for i, r in enumerate(rows) if r.get("reward") is None or r.get("prompt_idx") is None]
        if missing:
            raise ValueError(f"GRPO needs each row's reward and prompt_idx; row {missing[0]} has none (score first)")
        self.scale_by_std, self.eps = scale_by_std, eps

    def advantages(self) -> torch.Tensor:
        rewards = torch.tensor([r["reward"] for r in self.rows], dtype=torch.float64)
        return group_advantages(rewards, [r["prompt_idx"] for r in self.rows], self.scale_by_std, self.eps)

    def training_stats(self) -> dict[str, float]:
        groups: dict[int, set] = {}
        for r in self.rows:
            groups.setdefault(r["prompt_idx"], set()).add(r["reward"])
        return {
            **super().training_stats(),
            "grpo_mean_abs_advantage": self.row_advantages.abs().mean().item(),
            "grpo_zero_variance_groups": sum(len(g) == 1 for g in groups.values()) / len(groups),
        }
