"""Before/after image grids that show the reward as well as the images (paper Figures 5 and 6).

Each tile gets a bar underneath, as long as its reward (scaled to the lowest and highest score of both
halves), and each half a caption with its mean: small changes in many images are easier to see as bars.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

from raft.sampling.images import image_grid

BAR, CAPTION = 6, 14  # pixels under each tile, above each half


def scored_tiles(
    images: Sequence[Image.Image], scores: Sequence[float], low: float, high: float, scale: int
) -> list[Image.Image]:
    """Each image enlarged by `scale` (nearest), with its reward bar below it."""
    tiles = []
    for image, score in zip(images, scores):
        w, h = image.width * scale, image.height * scale
        tile = Image.new("RGB", (w, h + BAR), (255, 255, 255))
        tile.paste(image.convert("RGB").resize((w, h), Image.NEAREST), (0, 0))
        share = 0.0 if high <= low else min(1.0, max(0.0, (score - low) / (high - low)))
        draw = ImageDraw.Draw(tile)
        draw.rectangle([0, h + 1, w - 1, h + BAR - 1], fill=(225, 225, 225))
        if share > 0:
            draw.rectangle([0, h + 1, max(0, round(share * w) - 1), h + BAR - 1], fill=(40, 150, 60))
        tiles.append(tile)
    return tiles


def before_after_grid(
    halves: Sequence[tuple[str, Sequence[Image.Image], Sequence[float]]], columns: int, scale: int
) -> Image.Image:
    """[(caption, images, scores), ...] side by side, tiles in rows of `columns`, bars on one common scale."""
    every = [s for _, _, scores in halves for s in scores]
    low, high = min(every), max(every)
    grids = [image_grid(scored_tiles(images, scores, low, high, scale), columns) for _, images, scores in halves]
    gap = max(4, grids[0].width // 40)
    out = Image.new(
        "RGB",
        (sum(g.width for g in grids) + gap * (len(grids) - 1), CAPTION + max(g.height for g in grids)),
        (255, 255, 255),
    )
    draw, x = ImageDraw.Draw(out), 0
    for (caption, _, scores), grid in zip(halves, grids):
        draw.text((x + 2, 1), f"{caption}: mean reward {sum(scores) / len(scores):.3f}", fill=(0, 0, 0))
        out.paste(grid, (x, CAPTION))
        x += grid.width + gap
    return out
