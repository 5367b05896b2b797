"""Load causal LMs from offline aliases, local folders or Hugging Face hub ids."""

from __future__ import annotations

import os
from pathlib import Path

from raft.infra.devices import dtype_of
from raft.policies.models import smollm2
from raft.policies.models.tiny import TINY_ALIAS, tiny_folder


def resolve_model_path(name_or_path: str) -> str:
    """Turn an offline alias into its folder; leave folders and hub ids as they are."""
    if name_or_path == smollm2.ALIAS:
        return str(smollm2.smollm2_folder())
    if name_or_path == TINY_ALIAS:
        return str(tiny_folder())
    return name_or_path


def check_model_name(name_or_path: str, field: str = "model.name_or_path") -> None:
    """Fail fast, before any weights load, on a name that cannot be a model."""
    if not name_or_path:
        raise ValueError(f"{field} is empty")
    if name_or_path == smollm2.ALIAS:
        smollm2.gguf_path()  # raises with the install hint when the package is missing
        return
    if name_or_path == TINY_ALIAS:
        return
    path = Path(name_or_path).expanduser()
    if path.exists():
        check_model_folder(path, field)
        return
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise ValueError(
            f"{field}='{name_or_path}' is neither an existing folder, an offline alias "
            f"('{smollm2.ALIAS}', '{TINY_ALIAS}') nor a hub id like 'org/name'"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(name_or_path):
        raise ValueError(f"{field}='{name_or_path}' is not in the local hub cache and HF_HUB_OFFLINE=1")


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_folder(path: Path, field: str) -> None:
    """A local model folder (a Hugging Face save, or a LoRA adapter over one) must hold what loading needs."""
    from raft.infra.atomic import check_checkpoint

    check_checkpoint(path, field)  # a folder, whole if raft wrote it
    adapter = (path / "adapter_config.json").exists()
    if not adapter and not (path / "config.json").exists():
        raise ValueError(f"{field}='{path}' is a folder without config.json (nor adapter_config.json)")
    weights = ADAPTER_WEIGHTS if adapter else WEIGHTS
    if not any((path / name).exists() for name in weights):
        raise ValueError(f"{field}='{path}' has no weights (none of {', '.join(weights)})")
    if not adapter and not any((path / name).exists() for name in TOKENIZER):
        raise ValueError(f"{field}='{path}' has no tokenizer files (none of {', '.join(TOKENIZER)})")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    return tokenizer


def load_causal_lm(name_or_path: str, dtype: str = "float32"):
    """Return (model, tokenizer) in eval mode. `dtype` is a name from raft.infra.devices.DTYPES."""
    from transformers import AutoModelForCausalLM

    torch_dtype = dtype_of(dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), dtype=torch_dtype)
    tokenizer = load_tokenizer(name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
