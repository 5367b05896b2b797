"""Log-probabilities of response token ids given prompt token ids under a causal LM.

Callers pass ids, never text: the sampled ids for the KL terms, and references tokenised as the
model would have produced them (`raft.sampling.tokens.encode_reference`) for perplexity. Rows are
padded on one side and position ids are taken from the attention mask, so left and right padding
give the same numbers as scoring one row at a time.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch

Rows = Sequence[tuple[Sequence[int], Sequence[int]]]  # (prompt ids, response ids) per pair


def _fit(rows: Rows, max_length: int) -> list[tuple[list[int], int]]:
    """(ids, number of response tokens at the end) per pair; long prompts lose their left side."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    out = []
    for prompt_ids, response_ids in rows:
        response_ids = list(response_ids)[: max_length - 1]
        prompt_ids = list(prompt_ids)[max(0, len(prompt_ids) + len(response_ids) - max_length) :]
        ids = prompt_ids + response_ids
        out.append((ids, min(len(response_ids), len(ids) - 1)))  # the first token has no context
    return out


def _pad(rows: list[list[int]], pad_id: int, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, span] = torch.tensor(r, dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _batch_sums(model, rows: list[tuple[list[int], int]], pad_id: int, side: str) -> list[tuple[float, int]]:
    ids, mask = _pad([r for r, _ in rows], pad_id, side, model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {}
    n_keep = max(n for _, n in rows) + 1
    if side == "left" and "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = n_keep  # responses sit at the right edge: skip the prompt's logits
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits
    offset = ids.shape[1] - logits.shape[1]  # logits[:, j] predicts ids[:, offset + j + 1]
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = ids[:, offset + 1 :]
    token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    out = []
    for i, (row, n) in enumerate(rows):
        end = ids.shape[1] - offset - 1 if side == "left" else len(row) - offset - 1
        out.append((float(token_lp[i, end - n : end].sum()), n))
    return out


def response_sums(
    model, rows: Rows, pad_id: int, batch_size: int = 8, max_length: int = 1024, padding_side: str = "left"
) -> list[tuple[float, int]]:
    """(sum of response-token log-probs, number of response tokens) per pair, in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    fitted = _fit(rows, max_length)
    order = sorted(range(len(fitted)), key=lambda i: len(fitted[i][0]))  # similar lengths share a batch
    sums: list[tuple[float, int]] = [(0.0, 0)] * len(fitted)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, result in zip(chunk, _batch_sums(model, [fitted[i] for i in chunk], pad_id, padding_side)):
                sums[i] = result
    finally:
        model.train(was_training)
    return sums


def sequence_log_probs(model, rows: Rows, pad_id: int, **kwargs) -> list[float]:
    """Sum of log p(response token | prompt, earlier response tokens) per pair, in input order."""
    return [s for s, _ in response_sums(model, rows, pad_id, **kwargs)]


def reference_perplexity(model, rows: Rows, pad_id: int, **kwargs) -> float:
    """exp(total NLL of reference tokens / number of reference tokens); prompt tokens are not scored."""
    sums = response_sums(model, rows, pad_id, **kwargs)
    n_tokens = sum(n for _, n in sums)
    if n_tokens == 0:
        return math.nan
    return math.exp(-sum(s for s, _ in sums) / n_tokens)
