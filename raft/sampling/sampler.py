"""Generation settings shared by RAFT, PPO and evaluation (the paper's K, lambda, top-k, max new tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

TRUNCATED = ("train", "drop")
ENGINES = ("hf", "vllm")
# What the sampler's own fields (and the model's EOS ids, and the run's seed) set in either engine: never
# through `generation_kwargs`, where a second value would contradict the first.
OWNED_KEYS = {
    "temperature": "set sampler.temperature",
    "top_k": "set sampler.top_k",
    "top_p": "set sampler.top_p",
    "max_new_tokens": "set sampler.max_new_tokens",
    "max_tokens": "set sampler.max_new_tokens",
    "max_length": "set sampler.max_new_tokens",
    "n": "set sampler.K",
    "num_return_sequences": "set sampler.K",
    "stop": "set sampler.stop",
    "stop_strings": "set sampler.stop",
    "do_sample": "raft always samples (sampler.top_k=1 is greedy)",
    "eos_token_id": "the model's EOS ids end a response (its generation config and tokenizer)",
    "stop_token_ids": "the model's EOS ids end a response (its generation config and tokenizer)",
    "pad_token_id": "raft pads with the tokenizer's pad id",
    "seed": "the run's seed seeds sampling",
}


class FrozenKwargs(dict):
    """A read-only, hashable dict: `sampler.generation_kwargs` as a field of a frozen dataclass.

    Lists in it are held as tuples and mappings as FrozenKwargs; `plain()` gives them back as lists and dicts
    for the engines. It compares, prints, pickles and serialises to JSON as the dict it holds.
    """

    def _read_only(self, *args, **kwargs):
        raise TypeError("sampler.generation_kwargs is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):  # pickle and deepcopy rebuild it whole (item by item would hit __setitem__)
        return (type(self), (dict(self),))

    def plain(self) -> dict:
        return {key: _thaw(value) for key, value in self.items()}


def _freeze(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        if not all((isinstance(k, str) and k) or (isinstance(k, int) and not isinstance(k, bool)) for k in value):
            raise ValueError(f"{where} must have non-empty string (or token id) keys, got {list(value)!r}")
        return FrozenKwargs({k: _freeze(v, f"{where}.{k}") for k, v in value.items()})
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # a list, or OmegaConf's ListConfig
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise ValueError(f"{where} must be a number, string, boolean, null, list or mapping, got {value!r}")


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenKwargs):
        return value.plain()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Sampler:
    K: int = 4  # responses per prompt; the acceptance ratio of local ranking is 1/K
    temperature: float = 1.0  # the paper's lambda
    top_k: int = 0  # 0 disables top-k
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 64  # sequences per generate call (prompts per call = batch_size // K, at least 1)
    # Strings that end a response (raw dialogue models write the next "\n\nHuman:" turn): the response
    # is cut before the string, its tokens stay in the sample as its stop, and the cut is recorded.
    stop: Sequence[str] = ()
    # A response cut at max_new_tokens: "train" on it without an EOS (the model never stopped), or
    # "drop" it before selection, so only responses the model finished are ranked.
    truncated: str = "train"
    # What draws the samples: Hugging Face `generate` in raft's process, or a vLLM engine in its own
    # (settings under `model.vllm`); both give the same Sample fields, token ids and stop reasons included.
    engine: str = "hf"
    # Sampling settings beyond p^(1/lambda) with top-k / top-p, handed to the engine by name (e.g.
    # {repetition_penalty: 1.1}). Empty (the default): the samples come from exactly that distribution,
    # whatever the model's generation_config.json suggests. Keys: transformers GenerationConfig fields
    # (engine=hf) or the vLLM SamplingParams fields in raft/sampling/engines/vllm_server.py VLLM_KWARGS (engine=vllm;
    # min_new_tokens there means min_tokens). Any key moves the samples off the policy's p^(1/lambda):
    # importance ratios and KL estimates computed from them are no longer exact.
    generation_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.K < 1:
            raise ValueError(f"sampler.K must be >= 1, got {self.K}")
        if not self.temperature > 0:
            raise ValueError(f"sampler.temperature (lambda) must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"sampler.top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampler.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampler.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"sampler.batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"sampler.stop must be a list of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # hashable, and the same after a YAML list
        if self.truncated not in TRUNCATED:
            raise ValueError(f"sampler.truncated must be one of {TRUNCATED}, got {self.truncated!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"sampler.engine must be one of {ENGINES}, got {self.engine!r}")
        kwargs = {} if self.generation_kwargs is None else self.generation_kwargs
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"sampler.generation_kwargs must be a mapping (key: value), got {kwargs!r}")
        kwargs = _freeze(kwargs, "sampler.generation_kwargs")
        object.__setattr__(self, "generation_kwargs", kwargs)  # hashable, and the same after a YAML mapping
        for key in kwargs:
            if not isinstance(key, str):
                raise ValueError(f"sampler.generation_kwargs keys must be setting names, got {key!r}")
            if key in OWNED_KEYS:
                raise ValueError(f"sampler.generation_kwargs.{key} is raft's own setting: {OWNED_KEYS[key]}")
        if kwargs:
            check_engine_kwargs(self.engine, kwargs)

    @property
    def prompts_per_call(self) -> int:
        return max(1, self.batch_size // self.K)


def check_engine_kwargs(engine: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse a key that `engine` would not take as a sampling setting, naming `sampler.generation_kwargs`."""
    if engine == "vllm":
        from raft.sampling.engines.vllm_server import vllm_kwargs

        vllm_kwargs(kwargs)
    else:
        from raft.sampling.generation import check_hf_kwargs

        check_hf_kwargs(kwargs)
