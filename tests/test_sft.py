import math

import pytest
import torch

from raft.models import load_causal_lm
from raft.modules.sft import IGNORE, pad_batch, response_loss, training_rows
from raft.policies.causal_lm import CausalLMPolicy
from raft.samples import Sample


def test_response_loss_counts_only_unmasked_tokens():
    # Two-token vocabulary. Position 0 predicts token 1 with logits (0, 0): loss ln 2.
    # Position 1 predicts token 0 with logits (ln 3, 0): p = 3/4, loss ln(4/3). Position 2 predicts a
    # masked label and must not count. Mean = (ln 2 + ln 4/3) / 2.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE, 1, 0, IGNORE]])
    expected = (math.log(2) + math.log(4 / 3)) / 2
    assert response_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def text_rows(tokenizer, prompts, responses, max_length, truncated=False):
    """Training rows of dataset-style text pairs, tokenised by the raw-text policy as the model would produce them."""
    policy = CausalLMPolicy("tiny-llama", chat_template=False)
    samples = [
        Sample(prompt_idx=i, prompt=p, response=r, finish_reason="length" if truncated else None)
        for i, (p, r) in enumerate(zip(prompts, responses))
    ]
    return training_rows(policy.token_rows(tokenizer, samples), max_length)


def test_prompt_tokens_are_masked_and_eos_closes_the_response():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["How are you?"], [" Great"], max_length=64)
    prompt_len = len(tokenizer("How are you?", add_special_tokens=False)["input_ids"])
    labels = rows[0]["labels"]
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == rows[0]["input_ids"][prompt_len:]
    assert labels[-1] == tokenizer.eos_token_id


def test_a_response_cut_at_the_length_cap_gets_no_eos():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["How are you?"], [" Great"], max_length=64, truncated=True)
    assert tokenizer.eos_token_id not in rows[0]["labels"]


def test_truncation_keeps_the_response_end_and_padding_is_masked():
    _, tokenizer = load_causal_lm("tiny-llama")
    rows = text_rows(tokenizer, ["a long prompt " * 20, "hi"], [" yes", " no"], max_length=8)
    assert len(rows[0]["input_ids"]) == 8 and rows[0]["labels"][-1] == tokenizer.eos_token_id
    batch = pad_batch(rows, tokenizer.pad_token_id)
    short = len(rows[1]["input_ids"])
    assert batch["attention_mask"][1, short:].sum() == 0
    assert (batch["labels"][1, short:] == IGNORE).all()
