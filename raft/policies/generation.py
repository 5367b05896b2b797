"""Batched sampling of K responses per prompt that computes each prompt's prefix once.

The prompt (all but its last token) is run through the model once; its key/value cache is then
repeated K times and `generate` continues from it. With long prompts (HH-RLHF dialogues) and large K
this removes (K-1)/K of the prompt work.
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from raft.sampling import Sampler


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def sample_k(model, tokenizer, prompts: Sequence[str], sampler: Sampler, desc: str = "sampling") -> list[list[str]]:
    """Return, for each prompt, `sampler.K` decoded responses."""
    from transformers import DynamicCache

    K, per_call = sampler.K, sampler.prompts_per_call
    out: list[list[str]] = []
    settings = dict(do_sample=True, temperature=sampler.temperature, top_k=sampler.top_k or None,
                    top_p=sampler.top_p, max_new_tokens=sampler.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    bar = tqdm(total=len(prompts) * K, desc=desc, unit="sample", leave=False)
    for start in range(0, len(prompts), per_call):
        enc = tokenizer(list(prompts[start : start + per_call]), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        cache = DynamicCache(config=model.config)
        if ids.shape[1] > 1:
            model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=_position_ids(mask[:, :-1]),
                  cache=cache, use_cache=True)
            cache.batch_repeat_interleave(K)
        generated = model.generate(input_ids=ids.repeat_interleave(K, 0), attention_mask=mask.repeat_interleave(K, 0),
                                   cache=cache if ids.shape[1] > 1 else None, **settings)
        texts = tokenizer.batch_decode(generated[:, ids.shape[1]:], skip_special_tokens=True)
        out += [[t.strip() for t in texts[i * K : (i + 1) * K]] for i in range(len(texts) // K)]
        bar.update(len(texts))
    bar.close()
    return out
