"""One PPO batch of experience: prompt + sampled response token ids, and what the old policy said about them."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Rollouts:
    """Row i is `input_ids[i] = [left-padded prompt | response, right-padded]`, length P + R.

    All per-token tensors are [batch, R] and aligned with the response tokens; `response_mask` marks
    the generated tokens up to and including the first EOS.
    """

    input_ids: torch.Tensor  # [B, P + R] long
    attention_mask: torch.Tensor  # [B, P + R]
    response_mask: torch.Tensor  # [B, R]
    logprobs: torch.Tensor  # [B, R] log p_old(y_t | ...) of the sampled tokens
    ref_logprobs: torch.Tensor  # [B, R] the same under the frozen reference
    values: torch.Tensor  # [B, R] value estimates of the old policy
    scores: torch.Tensor  # [B] scalar reward of each response

    @property
    def response_length(self) -> int:
        return self.response_mask.shape[1]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device) -> "Rollouts":
        return Rollouts(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def response_mask(response_ids: torch.Tensor, eos_token_id: int | list[int] | None) -> torch.Tensor:
    """1 for generated tokens up to and including the first EOS, 0 after it (pad may equal EOS)."""
    if eos_token_id is None:
        return torch.ones_like(response_ids)
    eos_ids = torch.as_tensor(eos_token_id, device=response_ids.device).reshape(-1)
    is_eos = torch.isin(response_ids, eos_ids).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS tokens strictly before position t
    return (eos_before == 0).long()


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per position, in float32 for a stable ratio."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token, as `generate` does for left padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
