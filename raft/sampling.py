"""Generation settings shared by RAFT, PPO and evaluation (the paper's K, lambda, top-k, max new tokens)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    K: int = 4  # responses per prompt; the acceptance ratio of local ranking is 1/K
    temperature: float = 1.0  # the paper's lambda
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 64  # sequences per generate call (prompts per call = batch_size // K, at least 1)

    def __post_init__(self) -> None:
        if self.K < 1:
            raise ValueError(f"sampler.K must be >= 1, got {self.K}")
        if not self.temperature > 0:
            raise ValueError(f"sampler.temperature (lambda) must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampler.top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampler.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampler.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"sampler.batch_size must be >= 1, got {self.batch_size}")

    @property
    def prompts_per_call(self) -> int:
        return max(1, self.batch_size // self.K)
