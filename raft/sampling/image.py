"""How diffusion policies draw their K images per prompt, and the schedulers they may draw them with."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "pndm": PNDMScheduler,
}


@dataclass(frozen=True)
class DiffusionSampler:
    K: int = 20  # images per prompt; acceptance ratio 1/K = 0.05 as in the paper's Table 13
    steps: int = 50
    guidance_scale: float = 7.5  # classifier-free guidance; 1.0 turns it off
    resolution: int = 512
    scheduler: str = "ddim"
    batch_size: int = 8  # images per denoising call
    seed: int = 0

    def __post_init__(self) -> None:
        if self.K < 1:
            raise ValueError(f"sampler.K must be >= 1, got {self.K}")
        if self.steps < 1:
            raise ValueError(f"sampler.steps must be >= 1, got {self.steps}")
        if self.guidance_scale < 1:
            raise ValueError(f"sampler.guidance_scale must be >= 1 (1 = no guidance), got {self.guidance_scale}")
        # Stable Diffusion's VAE downsamples by 8; the digits UNet by 4. Multiples of 8 suit both.
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"sampler.resolution must be a positive multiple of 8, got {self.resolution}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"sampler.scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")
        if self.batch_size < 1:
            raise ValueError(f"sampler.batch_size must be >= 1, got {self.batch_size}")

    def make_scheduler(self, config: Any) -> Any:
        """The chosen scheduler, built from the model's own noise-schedule config (betas, prediction type)."""
        return SCHEDULERS[self.scheduler].from_config(config)

    def generator(self, stage: str, prompt_idx: int, sample_idx: int) -> torch.Generator:
        """Noise for one image depends on (seed, stage folder name, prompt, sample): a rerun stage redraws the
        same images (resume), each iteration draws fresh ones, and before/after evaluations that use the
        same folder name share their noise (paired comparison)."""
        key = f"{self.seed}/{stage}/{prompt_idx}/{sample_idx}".encode()
        return torch.Generator().manual_seed(zlib.crc32(key))


def image_name(prompt_idx: int, sample_idx: int) -> str:
    """Where a sampled image lives, relative to the stage folder (Sample.response)."""
    return f"images/p{prompt_idx:05d}_s{sample_idx:03d}.png"
