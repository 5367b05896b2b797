"""LAION aesthetic predictor: a small head on normalised CLIP image embeddings, scoring roughly 1-10.

Two heads are in use (https://github.com/LAION-AI/aesthetic-predictor and improved-aesthetic-predictor):
  v1: one linear layer (e.g. `sa_0_4_vit_l_14_linear.pth`, keys weight/bias),
  v2: an MLP 768-1024-128-64-16-1 (e.g. `sac+logos+ava1-l14-linearMSE.pth`, keys layers.N.*).
Both were trained on OpenAI CLIP ViT-L/14 embeddings; the head's input size follows the CLIP model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raft.infra.devices import pick_device
from raft.rewards.base import Reward
from raft.rewards.image.open_clip_loader import check_open_clip_args, load_open_clip

HEADS = ("v1", "v2")


class MLPAestheticHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        # Same layer indices as the published state dict, dropouts included, so it loads key for key.
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _missing_head(head: str, path: str | None) -> ValueError:
    source = {
        "v1": "sa_0_4_vit_l_14_linear.pth from github.com/LAION-AI/aesthetic-predictor",
        "v2": "sac+logos+ava1-l14-linearMSE.pth from github.com/christophschuhmann/improved-aesthetic-predictor",
    }[head]
    return ValueError(
        f"reward.head_path={path!r} is not a file: the aesthetic reward needs its head weights; "
        f"download {source} and set reward.head_path=/path/to/it"
    )


class AestheticReward(Reward):
    def __init__(
        self,
        head_path: str | None,
        head: str = "v2",
        clip_model: str = "ViT-L-14",
        clip_pretrained: str | None = "openai",
        model_config: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ):
        if head not in HEADS:
            raise ValueError(f"reward.head must be one of {HEADS}, got {head!r}")
        if head_path is None or not Path(head_path).expanduser().is_file():
            raise _missing_head(head, head_path)
        check_open_clip_args(clip_model, clip_pretrained, model_config, "reward")
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        self.head_path, self.head = Path(head_path).expanduser(), head
        self.clip_model, self.clip_pretrained, self.batch_size = clip_model, clip_pretrained, batch_size
        self.device = pick_device(device)
        self._models: tuple[Any, Any, nn.Module] | None = None

    def _load(self) -> tuple[Any, Any, nn.Module]:
        clip, preprocess, _ = load_open_clip(self.clip_model, self.clip_pretrained, self.device)
        dim = clip.visual.output_dim
        head = nn.Linear(dim, 1) if self.head == "v1" else MLPAestheticHead(dim)  # v1 keys: weight, bias
        head.load_state_dict(torch.load(self.head_path, map_location="cpu", weights_only=True))
        return clip, preprocess, head.to(self.device).eval()

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if self._models is None:
            self._models = self._load()
        clip, preprocess, head = self._models
        images = torch.stack([preprocess(im.convert("RGB")) for im in responses]).to(self.device)
        embedding = F.normalize(clip.encode_image(images).float(), dim=-1)
        return head(embedding).squeeze(-1).tolist()

    def close(self) -> None:
        self._models = None
