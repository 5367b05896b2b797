"""RAFT++ (Xiong et al. 2025, "A Minimalist Approach to LLM Reasoning"): RAFT's fine-tuning on the selected
samples, with PPO's clipped importance ratio against the policy that sampled them.

Every selected response has advantage 1, so the loss per token is -min(rho, clip(rho, 1 - eps, 1 + eps)):
while rho = 1 (the first minibatch) its gradient is exactly SFT's, and a token whose probability has already
risen past 1 + eps stops pulling (its gradient is 0), which keeps later minibatches and epochs close to the
sampling policy. pi_old and pi_theta are taken at the sampling temperature (the distribution the samples came
from), and `kl_coef` adds the small k3 KL to the initial policy that the paper's scripts use (0.001). Use with
`task=raft` (`module=raftpp`), with any selector (`selector=threshold` in the paper).
"""

from __future__ import annotations

import torch

from raft.modules.clipped_ratio import ClippedRatioModule


class RaftPPModule(ClippedRatioModule):
    stats_prefix = "raftpp_"

    def advantages(self) -> torch.Tensor:
        return torch.ones(len(self.rows))
