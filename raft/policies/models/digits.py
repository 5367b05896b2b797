"""A small class-conditional pixel-space UNet for scikit-learn's 8x8 digits, and the data it learns from."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

NUM_DIGITS = 10
NULL_CLASS = NUM_DIGITS  # the extra class embedding used as "no prompt" for classifier-free guidance
_PROMPT = re.compile(r"^\s*digit\s+([0-9])\s*$", re.IGNORECASE)


def digit_of_prompt(prompt: str) -> int:
    """'digit 7' -> 7. Prompts are text so the digits model shares the text policies' data interface."""
    match = _PROMPT.match(prompt)
    if match is None:
        raise ValueError(f"digits prompts look like 'digit 0'..'digit 9', got {prompt!r}")
    return int(match.group(1))


def build_digits_unet(sample_size: int = 16, channels: tuple[int, ...] = (32, 64, 64)) -> UNet2DModel:
    """Three resolution levels, attention only at the coarsest: a few hundred thousand parameters, CPU-friendly.

    Fully convolutional, so it can be sampled at any resolution divisible by 4 (resolution adaptation).
    """
    levels = len(channels)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=16,
        num_class_embeds=NUM_DIGITS + 1,
    )


def digits_dataset(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits as (N,1,resolution,resolution) in [-1, 1] (ink bright), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return images.clamp(0, 1) * 2 - 1, torch.tensor(digits.target, dtype=torch.long)
