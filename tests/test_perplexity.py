"""Batched, padded response log-probs against a plain one-row-at-a-time computation on a tiny Llama."""

import math

import pytest
import torch

from raft.policies.perplexity import reference_perplexity, sequence_log_probs

WORDS = "the cat sat on a mat dog ran to park you are kind why is sky blue it scatters light".split()
PROMPTS = ["Human: why is the sky blue ? Assistant:", "the cat", "Human: are you kind ?", "a"]
RESPONSES = ["it scatters light", "sat on a mat and the dog ran to the park", "you are", "cat"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "<unk>", "Human:", "Assistant:", "?", "and"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # add_special_tokens=True puts a BOS before the prompt; the response never gets one.
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def rows(tokenizer, prompts, responses, bos=False):
    return [
        (tokenizer(p, add_special_tokens=bos)["input_ids"], tokenizer(r, add_special_tokens=False)["input_ids"])
        for p, r in zip(prompts, responses)
    ]


def unbatched_log_prob(model, tokenizer, prompt, response, bos=False):
    prompt_ids = tokenizer(prompt, add_special_tokens=bos)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    total = 0.0
    for pos in range(len(prompt_ids), ids.shape[1]):
        total += float(log_probs[pos - 1, ids[0, pos]])
    return total, len(response_ids)


def test_bos_only_on_prompt(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    assert tokenizer("the cat")["input_ids"][0] == 1
    assert tokenizer("the cat", add_special_tokens=False)["input_ids"][0] != 1


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_sequence_log_probs_match_unbatched(model_and_tokenizer, side, batch_size, bos):
    model, tokenizer = model_and_tokenizer
    expected = [unbatched_log_prob(model, tokenizer, p, r, bos)[0] for p, r in zip(PROMPTS, RESPONSES)]
    got = sequence_log_probs(
        model,
        rows(tokenizer, PROMPTS, RESPONSES, bos),
        tokenizer.pad_token_id,
        batch_size=batch_size,
        padding_side=side,
    )
    assert got == pytest.approx(expected, abs=1e-4)
    assert all(v < 0 for v in got)
    if bos:  # the BOS token changes the context, so the numbers differ
        plain = sequence_log_probs(
            model, rows(tokenizer, PROMPTS, RESPONSES), tokenizer.pad_token_id, batch_size=batch_size
        )
        assert all(abs(a - b) > 1e-6 for a, b in zip(got, plain))


@pytest.mark.parametrize("side", ["left", "right"])
def test_reference_perplexity_is_token_weighted(model_and_tokenizer, side):
    model, tokenizer = model_and_tokenizer
    pairs = [unbatched_log_prob(model, tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    # Pooled over tokens, not a mean of per-sequence perplexities.
    expected = math.exp(-sum(s for s, _ in pairs) / sum(n for _, n in pairs))
    got = reference_perplexity(
        model, rows(tokenizer, PROMPTS, RESPONSES), tokenizer.pad_token_id, batch_size=2, padding_side=side
    )
    assert got == pytest.approx(expected, rel=1e-5)
    # A random model over a tiny vocabulary is near-uniform: perplexity close to the vocabulary size.
    assert 0.5 * len(tokenizer) < got < 2 * len(tokenizer)


def test_long_prompt_is_cut_on_the_left(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompt, response = "the cat sat on a mat", "and the dog"
    [got] = sequence_log_probs(
        model, rows(tokenizer, [prompt], [response], bos=True), tokenizer.pad_token_id, max_length=5
    )
    # 3 response tokens + the last 2 prompt tokens ("a mat"); the BOS at the far left is cut too.
    ids = torch.tensor([tokenizer("a mat and the dog", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
    expected = sum(float(log_probs[pos - 1, ids[0, pos]]) for pos in range(2, 5))
    assert got == pytest.approx(expected, abs=1e-4)


def test_mismatched_lengths_fail():
    from raft.policies.causal_lm import CausalLMPolicy

    with pytest.raises(ValueError, match="prompts"):
        CausalLMPolicy("tiny-llama").perplexity(None, ["a"], ["b", "c"])
