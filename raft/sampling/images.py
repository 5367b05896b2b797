"""Image files of a stage folder: diffusion samples live as PNGs next to the stage's JSON lines."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from PIL import Image

from raft.infra.atomic import temporary_beside
from raft.sampling.samples import Sample


def save_png(image: Image.Image, path: Path) -> None:
    """Atomic like every stage output: a killed run never leaves a truncated PNG behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_image(sample: Sample, stage_dir: Path) -> Image.Image:
    """The sample's image, read fully into memory (no open file handles held by rewards)."""
    path = Path(stage_dir) / sample.response
    if not path.is_file():
        raise FileNotFoundError(f"image of sample {sample.prompt_idx}/{sample.sample_idx} not found at {path}")
    with Image.open(path) as image:
        return image.copy()


def stage_dir_of(checkpoint_dir: Path) -> Path:
    """`finetune` gets `<stage>/checkpoint`; the selected samples' images are relative to `<stage>`."""
    return Path(checkpoint_dir).parent


def image_grid(images: Sequence[Image.Image], columns: int, scale: int = 1) -> Image.Image:
    """Tile equal-sized images row by row; `scale` enlarges tiny images (nearest) so they can be seen."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    w, h = images[0].size
    rows = math.ceil(len(images) / columns)
    grid = Image.new(images[0].mode, (columns * w * scale, rows * h * scale))
    for i, image in enumerate(images):
        tile = image.resize((w * scale, h * scale), Image.NEAREST) if scale > 1 else image
        grid.paste(tile, ((i % columns) * w * scale, (i // columns) * h * scale))
    return grid
