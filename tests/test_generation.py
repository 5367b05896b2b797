import pytest
import torch

from raft.models import build_tiny_causal_lm, load_causal_lm
from raft.policies.generation import sample_k
from raft.policies.tokens import stop_token_ids
from raft.sampling import Sampler


def encode(tokenizer, prompts):
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    folder = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny"), seed=3)
    return load_causal_lm(str(folder))


def test_shared_prefix_sampling_matches_plain_generation(model_and_tokenizer):
    """Greedy decoding through the shared-prefix path equals `generate` on each prompt alone."""
    model, tokenizer = model_and_tokenizer
    prompts = ["How can I cook rice without a rice cooker?", "hi", "Please write a short note to a friend"]
    sampler = Sampler(K=3, temperature=1.0, top_k=1, max_new_tokens=10, batch_size=6)  # top-1 = greedy
    ours = sample_k(model, tokenizer, encode(tokenizer, prompts), sampler, stop_token_ids(model, tokenizer))
    for prompt, responses in zip(prompts, ours):
        enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        plain = model.generate(**enc, do_sample=False, max_new_tokens=10, pad_token_id=tokenizer.pad_token_id)
        new = plain[0, enc["input_ids"].shape[1] :].tolist()
        expected = new[: new.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in new else new
        assert [g.ids for g in responses] == [expected] * 3
        assert [g.text for g in responses] == [tokenizer.decode(expected, skip_special_tokens=True)] * 3


def test_k_samples_per_prompt_differ_when_sampling(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    torch.manual_seed(0)
    out = sample_k(
        model,
        tokenizer,
        encode(tokenizer, ["hi", "How are you"]),
        Sampler(K=4, temperature=1.5, max_new_tokens=8),
        stop_token_ids(model, tokenizer),
    )
    assert [len(r) for r in out] == [4, 4]
    assert len({g.text for g in out[0]}) > 1


@pytest.mark.parametrize(
    "field, kwargs",
    [
        ("sampler.K", dict(K=0)),
        ("sampler.temperature", dict(temperature=0.0)),
        ("sampler.top_p", dict(top_p=0.0)),
        ("sampler.max_new_tokens", dict(max_new_tokens=0)),
    ],
)
def test_bad_sampler_values_name_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        Sampler(**kwargs)
