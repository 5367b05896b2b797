"""Loading an OpenCLIP model for the image rewards, with errors that say which weights to provide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


def check_open_clip_args(model: str, pretrained: str | None, model_config: str | None, field: str) -> None:
    """Cheap checks at construction, so a bad config fails before any stage runs."""
    import open_clip

    if model_config is not None:
        if not Path(model_config).expanduser().exists():
            raise ValueError(f"{field}.model_config={model_config!r} does not exist (an OpenCLIP model config JSON)")
        open_clip.add_model_config(Path(model_config).expanduser())
    if model not in open_clip.list_models() and not model.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(f"{field}.model={model!r} is not an OpenCLIP architecture (see open_clip.list_models())")
    if pretrained is None:
        raise ValueError(
            f"{field}.pretrained is required: an OpenCLIP tag such as 'openai' or 'laion2b_s32b_b79k' (downloads "
            "from the hub) or the path of a checkpoint file; random weights would make the reward meaningless"
        )
    if _looks_like_path(pretrained) and not Path(pretrained).expanduser().is_file():
        raise ValueError(f"{field}.pretrained={pretrained!r}: no such checkpoint file")


def load_open_clip(model: str, pretrained: str, device: str | torch.device) -> tuple[torch.nn.Module, Any, Any]:
    """(model in eval mode, image preprocessing transform, tokenizer)."""
    import open_clip

    weights = str(Path(pretrained).expanduser()) if _looks_like_path(pretrained) else pretrained
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device)
    except (OSError, RuntimeError, ValueError) as err:
        raise FileNotFoundError(
            f"OpenCLIP weights {model}/{pretrained} could not be loaded ({type(err).__name__}: {err}). Provide "
            "reward.pretrained=/path/to/open_clip_model.safetensors (or .bin/.pt) or a pretrained tag with internet."
        ) from err
    return clip.eval().requires_grad_(False), preprocess, open_clip.get_tokenizer(model)
