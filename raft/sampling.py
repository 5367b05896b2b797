"""Generation settings shared by RAFT, PPO and evaluation (the paper's K, lambda, top-k, max new tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

TRUNCATED = ("train", "drop")
ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class Sampler:
    K: int = 4  # responses per prompt; the acceptance ratio of local ranking is 1/K
    temperature: float = 1.0  # the paper's lambda
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 64  # sequences per generate call (prompts per call = batch_size // K, at least 1)
    # Strings that end a response (raw dialogue models write the next "\n\nHuman:" turn): the response
    # is cut before the string, its tokens stay in the sample as its stop, and the cut is recorded.
    stop: Sequence[str] = ()
    # A response cut at max_new_tokens: "train" on it without an EOS (the model never stopped), or
    # "drop" it before selection, so only responses the model finished are ranked.
    truncated: str = "train"
    # What draws the samples: Hugging Face `generate` in raft's process, or a vLLM engine in its own
    # (settings under `model.vllm`); both give the same Sample fields, token ids and stop reasons included.
    engine: str = "hf"

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
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"sampler.stop must be a list of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # hashable, and the same after a YAML list
        if self.truncated not in TRUNCATED:
            raise ValueError(f"sampler.truncated must be one of {TRUNCATED}, got {self.truncated!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"sampler.engine must be one of {ENGINES}, got {self.engine!r}")

    @property
    def prompts_per_call(self) -> int:
        return max(1, self.batch_size // self.K)
