import copy

import pytest
import torch

from raft.policies.models import build_tiny_causal_lm, load_causal_lm
from raft.sampling.generation import sample_k
from raft.sampling.sampler import Sampler
from raft.sampling.tokens import stop_token_ids


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


# -- pure sampling: p^(1/lambda) with the sampler's top-k / top-p, whatever the model's generation config says ---------

# what a model's generation_config.json may suggest (Qwen2.5-Instruct: repetition_penalty 1.05, top_k 20, ...)
SUGGESTED = dict(
    do_sample=False,
    temperature=0.3,
    top_k=3,
    top_p=0.6,
    min_p=0.2,
    typical_p=0.7,
    epsilon_cutoff=0.01,
    repetition_penalty=1.8,
    no_repeat_ngram_size=2,
    min_new_tokens=5,
    max_new_tokens=3,
)


@pytest.fixture(scope="module")
def clean_and_suggesting(tmp_path_factory):
    """One tiny model twice, its logits peaked (so that a penalty or a cut changes what is drawn): with the
    generation_config.json it was saved with, and with one that suggests every kind of sampling setting."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("suggesting")
    clean = build_tiny_causal_lm(root / "clean", seed=3)
    weights = load_file(clean / "model.safetensors")
    weights["model.norm.weight"] *= 6
    save_file(weights, clean / "model.safetensors", metadata={"format": "pt"})
    suggesting = root / "suggesting"
    shutil.copytree(clean, suggesting)
    config = json.loads((clean / "generation_config.json").read_text())
    (suggesting / "generation_config.json").write_text(json.dumps({**config, **SUGGESTED}))
    return load_causal_lm(str(clean)), load_causal_lm(str(suggesting))


PURE_PROMPTS = ["How can I cook rice without a rice cooker?", "hi", "Please write a short note to a friend"]


def draws(model, tokenizer, sampler, seed=0):
    torch.manual_seed(seed)
    out = sample_k(model, tokenizer, encode(tokenizer, PURE_PROMPTS), sampler, stop_token_ids(model, tokenizer))
    return [[g.ids for g in row] for row in out]


def processors(model, tokenizer, sampler):
    """The logits processors `generate` applies to each step's logits when sample_k draws with `sampler`."""
    seen = []
    build = model._get_logits_processor

    def recording(*args, **kwargs):
        built = build(*args, **kwargs)
        seen.append(list(built))
        return built

    model._get_logits_processor = recording
    try:
        draws(model, tokenizer, sampler)
    finally:
        del model._get_logits_processor
    assert seen and all([type(p) for p in s] == [type(p) for p in seen[0]] for s in seen)
    return seen[0]


@pytest.mark.parametrize(
    "sampler",
    [
        Sampler(K=4, temperature=1.0, max_new_tokens=12),
        Sampler(K=4, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=12),
        Sampler(K=2, temperature=1.3, top_k=8, top_p=0.9, max_new_tokens=12),
    ],
)
def test_samples_ignore_the_models_suggested_settings(clean_and_suggesting, sampler):
    """A model whose generation_config.json suggests penalties, cuts and other temperatures samples as the same
    model without them under the same seed: the sampler alone says what is drawn."""
    (clean, tokenizer), (suggesting, _) = clean_and_suggesting
    assert draws(suggesting, tokenizer, sampler) == draws(clean, tokenizer, sampler)
    assert suggesting.generation_config.repetition_penalty == 1.8  # its own config is left as it was


@pytest.mark.parametrize(
    "sampler, expected",
    [
        (Sampler(K=2, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6), []),
        (Sampler(K=2, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=6), [("TemperatureLogitsWarper", 0.7)]),
        (
            Sampler(K=2, temperature=1.3, top_k=8, top_p=0.9, max_new_tokens=6),
            [("TemperatureLogitsWarper", 1.3), ("TopKLogitsWarper", 8), ("TopPLogitsWarper", 0.9)],
        ),
    ],
)
def test_each_step_is_scaled_and_cut_as_the_sampler_says_and_no_more(clean_and_suggesting, sampler, expected):
    """p^(1/lambda), then the sampler's top-k and top-p: nothing from the model's config (repetition penalty,
    n-gram ban, min-p, typical-p, minimum length...) and no top-k at all for top_k=0 (transformers' own
    default would be 50, the model's 3)."""
    (clean, tokenizer), (suggesting, _) = clean_and_suggesting

    def settings(p):
        value = getattr(p, "temperature", None) or getattr(p, "top_k", None) or getattr(p, "top_p", None)
        return type(p).__name__, value

    for model in (suggesting, clean):
        assert [settings(p) for p in processors(model, tokenizer, sampler)] == expected


def test_samples_through_a_peft_wrapper_ignore_the_models_suggestions(clean_and_suggesting):
    """PPO samples from the LoRA-wrapped policy it trains: the wrapped model's suggestions stay out as well."""
    from peft import LoraConfig, get_peft_model

    (clean, tokenizer), (suggesting, _) = clean_and_suggesting
    wrapped = get_peft_model(
        copy.deepcopy(suggesting), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    )  # a fresh adapter: the same logits
    sampler = Sampler(K=3, temperature=0.9, max_new_tokens=10)
    assert draws(wrapped, tokenizer, sampler) == draws(clean, tokenizer, sampler)
    assert wrapped.generation_config.repetition_penalty == 1.8


def test_generation_kwargs_reach_generate(clean_and_suggesting):
    (clean, tokenizer), _ = clean_and_suggesting
    plain = Sampler(K=4, temperature=1.0, max_new_tokens=12)
    penalised = Sampler(K=4, temperature=1.0, max_new_tokens=12, generation_kwargs={"repetition_penalty": 1.8})
    [penalty] = processors(clean, tokenizer, penalised)
    assert type(penalty).__name__ == "RepetitionPenaltyLogitsProcessor" and penalty.penalty == 1.8
    assert draws(clean, tokenizer, penalised) != draws(clean, tokenizer, plain)
    banned = Sampler(K=2, max_new_tokens=12, generation_kwargs={"no_repeat_ngram_size": 1})
    for row in draws(clean, tokenizer, banned):
        for ids in row:
            assert len(set(ids)) == len(ids)  # no token twice


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ("repetition_penalty=1.1", "sampler.generation_kwargs must be a mapping"),
        ({"repetition_penalt": 1.1}, "sampler.generation_kwargs.repetition_penalt is not a transformers"),
        ({"presence_penalty": 0.5}, "sampler.generation_kwargs.presence_penalty is not a transformers"),
        ({"temperature": 0.5}, "sampler.generation_kwargs.temperature is raft's own setting: set sampler.temperature"),
        ({"top_k": 5}, "sampler.generation_kwargs.top_k is raft's own setting: set sampler.top_k"),
        ({"max_length": 5}, "sampler.generation_kwargs.max_length is raft's own setting: set sampler.max_new_tokens"),
        ({"num_beams": 4}, "sampler.generation_kwargs.num_beams changes what generate returns"),
        ({"repetition_penalty": "high"}, "sampler.generation_kwargs.repetition_penalty must be a number"),
        ({"no_repeat_ngram_size": 2.5}, "sampler.generation_kwargs.no_repeat_ngram_size must be a whole number"),
        ({"suppress_tokens": [1, object()]}, r"sampler.generation_kwargs.suppress_tokens\[1\] must be a number"),
        ({"epsilon_cutoff": "x"}, "sampler.generation_kwargs.epsilon_cutoff must be a number"),
        ({"remove_invalid_values": 1}, "sampler.generation_kwargs.remove_invalid_values must be a boolean"),
        ({1: 2}, "sampler.generation_kwargs keys must be setting names"),
    ],
)
def test_bad_generation_kwargs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sampler(generation_kwargs=kwargs)


def test_generation_kwargs_are_frozen_hashable_and_recorded_as_a_mapping():
    import dataclasses
    import json
    import pickle

    sampler = Sampler(generation_kwargs={"repetition_penalty": 1.1, "suppress_tokens": [3, 4]})
    assert Sampler().generation_kwargs == {} and Sampler(generation_kwargs=None).generation_kwargs == {}
    assert sampler.generation_kwargs == {"repetition_penalty": 1.1, "suppress_tokens": (3, 4)}
    assert sampler.generation_kwargs.plain() == {"repetition_penalty": 1.1, "suppress_tokens": [3, 4]}
    assert hash(sampler) == hash(Sampler(generation_kwargs={"suppress_tokens": (3, 4), "repetition_penalty": 1.1}))
    with pytest.raises(TypeError, match="read-only"):
        sampler.generation_kwargs["repetition_penalty"] = 2.0
    for copied in (
        dataclasses.replace(sampler, K=1).generation_kwargs,
        pickle.loads(pickle.dumps(sampler)).generation_kwargs,
        copy.deepcopy(sampler).generation_kwargs,
    ):
        assert copied == sampler.generation_kwargs
    recorded = json.loads(json.dumps(dataclasses.asdict(sampler)))["generation_kwargs"]
    assert recorded == {"repetition_penalty": 1.1, "suppress_tokens": [3, 4]}


def test_the_kv_cache_goes_in_under_the_name_the_models_forward_takes():
    """transformers releases that vLLM pins take `past_key_values`; newer ones take `cache`. An unknown keyword would
    vanish into **kwargs and leave the prompt's cache empty, so the name is read from the forward's signature."""
    from raft.sampling.generation import cache_keyword

    class Older(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=None, **kwargs): ...

    class Newer(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, cache=None, use_cache=None, **kwargs): ...

    assert (cache_keyword(Older()), cache_keyword(Newer())) == ("past_key_values", "cache")
