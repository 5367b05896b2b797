"""One sampled response per prompt, kept as token ids: PPO's ratios must be taken on the exact sampled tokens.

(RAFT's `sample_k` returns decoded text, which re-tokenises differently; PPO cannot use that.)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from raft.ppo.rollouts import response_mask
from raft.sampling import Sampler


@torch.no_grad()
def sample_token_ids(model, tokenizer, prompts: Sequence[str], sampler: Sampler):
    """Return (input_ids [N, P+R], attention_mask, response_mask [N, R], decoded responses).

    Generates `sampler.batch_size` prompts per call with the sampler's settings (K is ignored: one
    response each); rows from different calls are re-padded to one shape (prompt left, response right).
    """
    settings = dict(do_sample=True, temperature=sampler.temperature, top_k=sampler.top_k or None,
                    top_p=sampler.top_p, max_new_tokens=sampler.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(prompts), sampler.batch_size):
        enc = tokenizer(list(prompts[start : start + sampler.batch_size]), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        generated = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **settings)
        response = generated[:, enc["input_ids"].shape[1] :]
        chunks.append((enc["input_ids"], enc["attention_mask"], response))
    prompt_len = max(c[0].shape[1] for c in chunks)
    response_len = max(c[2].shape[1] for c in chunks)
    pad = tokenizer.pad_token_id
    ids, att, resp = [], [], []
    for prompt_ids, prompt_att, response in chunks:
        left = prompt_len - prompt_ids.shape[1]
        right = response_len - response.shape[1]
        ids.append(torch.cat([F.pad(prompt_ids, (left, 0), value=pad), F.pad(response, (0, right), value=pad)], 1))
        att.append(F.pad(prompt_att, (left, 0), value=0))
        resp.append(F.pad(response, (0, right), value=pad))
    responses = torch.cat(resp)
    mask = response_mask(responses, tokenizer.eos_token_id)
    # right padding only ever follows an EOS (a call stops early only when every row has finished)
    attention_mask = torch.cat([torch.cat(att), mask], dim=1)
    texts = [t.strip() for t in tokenizer.batch_decode(torch.where(mask.bool(), responses, pad),
                                                        skip_special_tokens=True)]
    return torch.cat(ids), attention_mask, mask, texts
