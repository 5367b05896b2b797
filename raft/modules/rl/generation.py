"""PPO's batch of experience as tensors, built from the token ids the policy sampled (never re-tokenised text)."""

from __future__ import annotations

from typing import Sequence

import torch

from raft.sampling.samples import Sample


def token_batch(samples: Sequence[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids [N, P+R], attention_mask [N, P+R], response_mask [N, R]): prompts left-padded, responses right.

    A response holds exactly the sampled ids, its EOS included only where the model emitted one.
    """
    prompt_len = max(len(s.prompt_ids) for s in samples)
    response_len = max(1, max(len(s.response_ids) for s in samples))
    n = len(samples)
    ids = torch.full((n, prompt_len + response_len), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    response_mask = torch.zeros((n, response_len), dtype=torch.long)
    for i, s in enumerate(samples):
        p, r = list(s.prompt_ids), list(s.response_ids)
        ids[i, prompt_len - len(p) : prompt_len] = torch.tensor(p, dtype=torch.long)
        ids[i, prompt_len : prompt_len + len(r)] = torch.tensor(r, dtype=torch.long)
        attention[i, prompt_len - len(p) : prompt_len + len(r)] = 1
        response_mask[i, : len(r)] = 1
    return ids, attention, response_mask
