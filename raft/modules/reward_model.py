"""Reward model training: a scalar head on a causal-LM or encoder backbone, Bradley-Terry loss on pairs.

Its texts and their encoding are defined here; loading, saving and scoring the trained model live in
`raft.rewards.model_files`, shared with `raft.rewards.reward_model`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from raft.data.preference_pairs import Pair
from raft.modules.traits import MethodTraits
from raft.trainer.fit import check_optimiser, finite
from raft.trainer.sharded_clipping import ShardedClipping

DEFAULT_TEMPLATE = "{prompt} {response}"  # HH responses are stored without their leading space


def format_texts(prompts: Sequence[str], responses: Sequence[str], template: str) -> list[str]:
    return [template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]


def encode(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def scalar_scores(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits[:, 0].float()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected); logsigmoid stays finite for large margins."""
    return -F.logsigmoid(r_chosen.float() - r_rejected.float()).mean()


def pairwise_accuracy(r_chosen: torch.Tensor | Sequence[float], r_rejected: torch.Tensor | Sequence[float]) -> float:
    """Share of pairs where the chosen response scores strictly higher (a tie counts as wrong)."""
    r_chosen, r_rejected = torch.as_tensor(r_chosen), torch.as_tensor(r_rejected)
    if r_chosen.numel() == 0:
        return float("nan")
    return (r_chosen > r_rejected).float().mean().item()


class RewardModelModule(ShardedClipping, pl.LightningModule):
    """Trains `model` (scalar head) on preference pairs; each batch scores chosen and rejected texts together."""

    traits = MethodTraits(for_task="reward_model")  # it learns from preference pairs, not from a policy's samples

    def __init__(
        self,
        model,
        tokenizer,
        train_pairs: Sequence[Pair],
        val_pairs: Sequence[Pair] = (),
        lr: float = 5e-6,
        weight_decay: float = 0.0,
        batch_size: int = 16,
        max_length: int = 512,
        warmup_ratio: float = 0.0,
        text_template: str = DEFAULT_TEMPLATE,
        lora_r: int = 0,
        lora_alpha: int = 32,
        lora_dropout: float = 0.1,
    ):
        super().__init__()
        self.check_arguments(locals())
        if lora_r > 0:
            from peft import LoraConfig, TaskType, get_peft_model

            # SEQ_CLS keeps the new scalar head ("score" / "classifier") fully trainable.
            model = get_peft_model(
                model,
                LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout),
            )
        self.model, self.tokenizer = model, tokenizer
        self.train_pairs, self.val_pairs = list(train_pairs), list(val_pairs)
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.max_length, self.warmup_ratio, self.text_template = max_length, warmup_ratio, text_template

    @staticmethod
    def check_arguments(a: Mapping[str, Any]) -> None:
        """The hyper-parameters' rules, also run before any model loads (raft/trainer/checks.py)."""
        check_optimiser(a)
        if a["batch_size"] < 1 or a["max_length"] < 2:
            raise ValueError(
                f"module.batch_size must be >= 1 and module.max_length >= 2, got {a['batch_size']}, {a['max_length']}"
            )
        if not 0.0 <= a["warmup_ratio"] < 1.0:
            raise ValueError(f"module.warmup_ratio must be in [0, 1), got {a['warmup_ratio']}")
        if a["lora_r"] < 0:
            raise ValueError(f"module.lora_r must be >= 0 (0 = full fine-tuning), got {a['lora_r']}")
        if "{response}" not in a["text_template"]:
            raise ValueError(f"module.text_template must contain {{response}}, got {a['text_template']!r}")

    def collate(self, pairs: list[Pair]) -> dict[str, torch.Tensor]:
        """Chosen texts first, then rejected ones, in one padded batch."""
        prompts = [p.prompt for p in pairs] * 2
        responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        return encode(self.tokenizer, format_texts(prompts, responses, self.text_template), self.max_length)

    def on_fit_start(self):
        self.train()  # from_pretrained returns eval mode, and Lightning keeps each submodule's mode

    def train_dataloader(self):
        return DataLoader(self.train_pairs, batch_size=self.batch_size, shuffle=True, collate_fn=self.collate)

    def val_dataloader(self):
        return DataLoader(self.val_pairs, batch_size=self.batch_size, collate_fn=self.collate) if self.val_pairs else []

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        scores = scalar_scores(self.model, batch)
        r_chosen, r_rejected = scores.chunk(2)
        loss = bradley_terry_loss(r_chosen, r_rejected)
        n = len(r_chosen)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=n)
        self.log(f"{stage}/accuracy", pairwise_accuracy(r_chosen.detach(), r_rejected.detach()), batch_size=n)
        return loss

    def training_step(self, batch, batch_idx):
        return finite(self._step(batch, "train"), self)

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(self.warmup_ratio * total)

        def factor(step: int) -> float:  # linear warmup, then linear decay to zero (paper Table 9)
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
