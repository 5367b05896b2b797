"""CLIP score: how well an image matches its prompt, 100 * cosine(image embedding, text embedding)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from raft.infra.devices import pick_device
from raft.rewards.base import Reward
from raft.rewards.image.open_clip_loader import check_open_clip_args, load_open_clip


class ClipScoreReward(Reward):
    """The paper's text-image alignment reward (OpenCLIP). Unclipped: negative cosines still rank images."""

    def __init__(
        self,
        model: str = "ViT-H-14",
        pretrained: str | None = "laion2b_s32b_b79k",
        model_config: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ):
        check_open_clip_args(model, pretrained, model_config, "reward")
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        self.model, self.pretrained, self.batch_size = model, pretrained, batch_size
        self.device = pick_device(device)
        self._clip: tuple[Any, Any, Any] | None = None

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if self._clip is None:
            self._clip = load_open_clip(self.model, self.pretrained, self.device)
        clip, preprocess, tokenizer = self._clip
        images = torch.stack([preprocess(im.convert("RGB")) for im in responses]).to(self.device)
        image_emb = F.normalize(clip.encode_image(images).float(), dim=-1)
        text_emb = F.normalize(clip.encode_text(tokenizer(list(prompts)).to(self.device)).float(), dim=-1)
        return (100 * (image_emb * text_emb).sum(-1)).tolist()

    def close(self) -> None:
        self._clip = None
