"""Log-probabilities of responses given prompts under a causal LM: reference perplexity and KL terms.

Prompt and response are tokenised separately, so the scored tokens are exactly the response's own
tokens, as when the policy generated them after the prompt. Like the sampler, the prompt is encoded
without special tokens by default (a chat template already writes its own); pass
add_special_tokens=True for raw prompts of models that expect a BOS token. Rows are padded on one side and position ids are taken from the
attention mask, so left and right padding give the same numbers as scoring one row at a time.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

import torch


def _encode(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int,
            add_special_tokens: bool) -> list[tuple[list[int], int]]:
    """(token ids, number of response tokens at the end) per pair; long prompts lose their left side."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    rows = []
    for prompt, response in zip(prompts, responses):
        prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"][: max_length - 1]
        prompt_ids = prompt_ids[len(prompt_ids) + len(response_ids) - max_length :] if (
            len(prompt_ids) + len(response_ids) > max_length) else prompt_ids
        ids = prompt_ids + response_ids
        # The first token of a sequence has no context and cannot be scored.
        rows.append((ids, min(len(response_ids), len(ids) - 1)))
    return rows


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


def _response_sums(model, tokenizer, prompts, responses, batch_size: int, max_length: int, padding_side: str | None,
                   add_special_tokens: bool):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    side = padding_side or getattr(tokenizer, "padding_side", "left")
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = _encode(tokenizer, prompts, responses, max_length, add_special_tokens)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # similar lengths share a batch
    sums: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, result in zip(chunk, _batch_sums(model, [rows[i] for i in chunk], pad_id, side)):
                sums[i] = result
    finally:
        model.train(was_training)
    return sums


def sequence_log_probs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 8,
                       max_length: int = 1024, padding_side: str | None = None,
                       add_special_tokens: bool = False) -> list[float]:
    """Sum of log p(response token | prompt, earlier response tokens) per pair, in input order."""
    sums = _response_sums(model, tokenizer, prompts, responses, batch_size, max_length, padding_side,
                          add_special_tokens)
    return [s for s, _ in sums]


def reference_perplexity(model, tokenizer, prompts: Sequence[str], references: Sequence[str], batch_size: int = 8,
                         max_length: int = 1024, padding_side: str | None = None,
                         add_special_tokens: bool = False) -> float:
    """exp(total NLL of reference tokens / number of reference tokens); prompt tokens are not scored."""
    sums = _response_sums(model, tokenizer, prompts, references, batch_size, max_length, padding_side,
                          add_special_tokens)
    n_tokens = sum(n for _, n in sums)
    if n_tokens == 0:
        return math.nan
    return math.exp(-sum(s for s, _ in sums) / n_tokens)
