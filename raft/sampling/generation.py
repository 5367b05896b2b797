"""Batched sampling of K responses per prompt that computes each prompt's prefix once.

The prompt (all but its last token) is run through the model once; its key/value cache is then
repeated K times and `generate` continues from it. With long prompts (HH-RLHF dialogues) and large K
this removes (K-1)/K of the prompt work. Prompts come in as token ids and responses go out as the
ids the model produced, so nothing is re-tokenised between sampling and training.

Samples come from p(y|x)^(1/temperature) with the sampler's top-k (0 = off) and top-p, and nothing else:
`generate` fills every setting its `generation_config` leaves unset from the model's generation_config.json
(e.g. Qwen2.5-Instruct's repetition_penalty 1.05) and then from transformers' defaults (top_k 50), so
`sample_k` sets each sampling setting itself (`generation_config`) and hides the model's generation config
while it samples (`without_model_defaults`). `sampler.generation_kwargs` asks for more, by name.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria

from raft.infra import progress
from raft.infra.forward import forward_takes
from raft.sampling.sampler import Sampler
from raft.sampling.tokens import first_stop

# Settings transformers fills with a non-None default when unset, at the values that leave the distribution as
# it is (those whose neutral value is None stay unset: without_model_defaults keeps the model's out of them)
NEUTRAL = dict(
    num_beams=1,
    repetition_penalty=1.0,
    encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    min_length=0,
    typical_p=1.0,
    epsilon_cutoff=0.0,
    eta_cutoff=0.0,
)
# GenerationConfig fields that change what `generate` returns or searches, not how a sample is drawn
NOT_SAMPLING = (
    "num_beams",
    "num_beam_groups",
    "return_dict_in_generate",
    "output_scores",
    "output_logits",
    "output_attentions",
    "output_hidden_states",
)
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def check_hf_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse a `sampler.generation_kwargs` key that is no GenerationConfig sampling setting, or a value of
    the wrong kind for it (transformers checks the values' ranges when it builds its processors)."""
    from transformers import GenerationConfig

    fields = {k for k in GenerationConfig().to_dict() if not k.startswith("_") and k != "transformers_version"}
    defaults = GenerationConfig._get_default_generation_params()
    for key, value in kwargs.items():
        if key not in fields:
            raise ValueError(
                f"sampler.generation_kwargs.{key} is not a transformers GenerationConfig setting (sampler.engine=hf)"
            )
        if key in NOT_SAMPLING:
            raise ValueError(f"sampler.generation_kwargs.{key} changes what generate returns, not how it samples")
        default = defaults.get(key)  # a number or flag where transformers has a default: the same kind here
        kind = type(default) if isinstance(default, (bool, int, float)) else None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is bool:
            fits = isinstance(value, bool)
        else:
            fits = kind is None or (number and (kind is float or float(value).is_integer()))
        if not fits:
            name = {bool: "boolean", int: "whole number", float: "number"}[kind]
            raise ValueError(f"sampler.generation_kwargs.{key} must be a {name}, got {value!r}")


def generation_config(sampler: Sampler, pad_id: int, stop_ids: Sequence[int]):
    """`generate`'s settings for `sampler`: p^(1/temperature) with its top-k (0 = off) and top-p, every other
    setting transformers would default at its neutral value, then `sampler.generation_kwargs`."""
    from transformers import GenerationConfig

    extra = getattr(sampler, "generation_kwargs", None) or {}
    extra = extra.plain() if hasattr(extra, "plain") else dict(extra)
    own = dict(
        do_sample=True,
        temperature=sampler.temperature,
        top_k=sampler.top_k,  # 0 stays 0: no top-k (None would let transformers' default of 50 in)
        top_p=sampler.top_p,
        max_new_tokens=sampler.max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=list(stop_ids),
    )
    return GenerationConfig(**{**NEUTRAL, **extra, **own})


@contextmanager
def without_model_defaults(model) -> Iterator[None]:
    """While it is open, the generation config that `model` (and any module in it: a PEFT wrapper's base)
    holds is one with the special token ids alone: its sampling suggestions (repetition_penalty,
    no_repeat_ngram_size, min_p, suppress_tokens, ...) cannot fill what `generation_config` leaves unset."""
    from transformers import GenerationConfig

    modules = model.modules() if hasattr(model, "modules") else [model]
    owners = [m for m in modules if isinstance(vars(m).get("generation_config"), GenerationConfig)]
    saved = [m.generation_config for m in owners]
    try:
        for module, config in zip(owners, saved):
            module.generation_config = GenerationConfig(**{k: getattr(config, k, None) for k in TOKEN_IDS})
        yield
    finally:
        for module, config in zip(owners, saved):
            module.generation_config = config


@dataclass(frozen=True)
class Generation:
    """One response: its ids up to and including what stopped it, its text before the stop, and why it ended."""

    ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length"
    stop_reason: int | str | None


class StopOnStrings(StoppingCriteria):
    """Stops a row once its generated text (never the prompt's) holds a stop string; end_response makes the cut."""

    def __init__(self, strings: Sequence[str], prompt_len: int, decode: Callable[[Sequence[int]], str]):
        self.strings, self.prompt_len, self.decode = tuple(strings), prompt_len, decode
        self.window = 2 * max(len(s) for s in strings) + 2  # tokens enough to spell the longest string

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = input_ids[:, self.prompt_len :][:, -self.window :].tolist()
        done = [any(s in self.decode(row) for s in self.strings) for row in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cache_keyword(model) -> str:
    """The name a model's forward takes its KV cache by: `cache` in recent transformers, `past_key_values` in the
    releases vLLM pins."""
    return "cache" if forward_takes(model, "cache") else "past_key_values"


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _prefix_len(n: int, ok: Callable[[int], bool]) -> int:
    """The largest m in 0..n with ok(m), for ok true up to some point and false after it."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def end_response(
    generated: Sequence[int], stop_ids: Sequence[int], stop: Sequence[str], decode: Callable[[Sequence[int]], str]
) -> Generation:
    """Cut one generated row where it ended: the first stop id (kept), else the first stop string, else the cap."""
    generated = list(generated)
    end = first_stop(generated, stop_ids)
    body = generated if end is None else generated[:end]
    text = decode(body)
    hits = sorted((text.find(s), s) for s in stop if s in text)
    if hits:
        at, string = hits[0]
        # the text keeps whole tokens before the string; the ids keep the string's tokens as the stop
        kept = _prefix_len(len(body), lambda m: len(decode(body[:m])) <= at)
        upto = _prefix_len(len(body), lambda m: string not in decode(body[:m])) + 1
        return Generation(body[:upto], decode(body[:kept]), "stop", string)
    if end is not None:
        return Generation(generated[: end + 1], text, "stop", generated[end])
    return Generation(generated, text, "length", None)


@torch.no_grad()
def sample_k(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    sampler: Sampler,
    stop_ids: Sequence[int],
    desc: str = "sampling",
) -> list[list[Generation]]:
    """For each prompt (token ids), `sampler.K` responses drawn from exactly the sampler's distribution."""
    from transformers import DynamicCache

    K, per_call = sampler.K, sampler.prompts_per_call
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    settings = generation_config(sampler, pad_id, stop_ids)
    cache_name = cache_keyword(model)

    def decode(ids):
        return tokenizer.decode(ids, skip_special_tokens=True)

    out: list[list[Generation]] = []
    bar = tqdm(total=len(prompts) * K, desc=progress.label(desc), unit="sample", leave=False)
    for start in range(0, len(prompts), per_call):
        ids, mask = _left_pad(prompts[start : start + per_call], pad_id, model.device)
        cache = DynamicCache(config=model.config)
        if ids.shape[1] > 1:
            model(
                input_ids=ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=_position_ids(mask[:, :-1]),
                use_cache=True,
                **{cache_name: cache},
                logits_to_keep=1,
            )
            cache.batch_repeat_interleave(K)
        stopping = [StopOnStrings(sampler.stop, ids.shape[1], decode)] if sampler.stop else None
        with without_model_defaults(model):
            generated = model.generate(
                input_ids=ids.repeat_interleave(K, 0),
                attention_mask=mask.repeat_interleave(K, 0),
                **{cache_name: cache if ids.shape[1] > 1 else None},
                stopping_criteria=stopping,
                generation_config=settings,
            )
        rows = [end_response(row, stop_ids, sampler.stop, decode) for row in generated[:, ids.shape[1] :].tolist()]
        out += [rows[i * K : (i + 1) * K] for i in range(len(rows) // K)]
        bar.update(len(rows))
    bar.close()
    return out
