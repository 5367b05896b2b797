"""Reinforce-Rej (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning: from Rejection Sampling to
Reinforce"): a clipped policy gradient on every sample of the prompts whose responses are neither all right nor
all wrong, negatives included, each response's advantage its raw reward: +1 right, -1 wrong.

With a 0/1 verifier (`reward=exact_match`) `advantage: binary` maps a reward >= `threshold` to +1 and any other
to -1, the paper's rule-based reward; `advantage: raw` uses the reward as it is (a reward already in {-1, 1}).
The prompts are chosen by the selector (`task=reinforce_rej`: `selector=all selector.mixed_prompts_only=true`);
the update is raft/modules/clipped_ratio.py's, at the sampling temperature, aggregated as `loss_type` says.
"""

from __future__ import annotations

import math

import torch

from raft.modules.clipped_ratio import ClippedRatioModule
from raft.modules.traits import MethodTraits

ADVANTAGES = ("binary", "raw")


class ReinforceRejModule(ClippedRatioModule):
    stats_prefix = "reinforce_rej_"
    # negatives carry half the signal: a selector must not keep only the best
    traits = MethodTraits(trains_on_every_sample=True, takes_reference=True)

    def __init__(
        self, model, rows: list[dict], pad_id: int, advantage: str = "binary", threshold: float = 1.0, **ratio
    ):
        super().__init__(model, rows, pad_id, **ratio)
        if advantage not in ADVANTAGES:
            raise ValueError(f"module.advantage must be one of {ADVANTAGES}, got {advantage!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"module.threshold must be a finite number, got {threshold}")
        missing = [i for i, r in enumerate(rows) if r.get("reward") is None]
        if missing:
            raise ValueError(f"Reinforce-Rej needs each row's reward; row {missing[0]} has none (score first)")
        self.advantage, self.threshold = advantage, threshold

    def advantages(self) -> torch.Tensor:
        rewards = torch.tensor([r["reward"] for r in self.rows], dtype=torch.float32)
        if self.advantage == "raw":
            return rewards
        return torch.where(rewards >= self.threshold, 1.0, -1.0)
