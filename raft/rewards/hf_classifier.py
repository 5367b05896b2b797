"""Any Hugging Face sequence classifier as a reward: one label's logit or probability."""

from __future__ import annotations

import string
from typing import Sequence

import torch

from raft.infra.devices import check_dtype, dtype_of, pick_device
from raft.rewards.base import Reward


def check_template(template: str, field: str = "reward.text_template") -> None:
    """The template may use {prompt} and must use {response}."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if "response" not in names or not names <= {"prompt", "response"}:
        raise ValueError(f"{field} must contain {{response}} and no field but {{prompt}}, got {template!r}")


class HFSequenceClassifier(Reward):
    """Scores `text_template.format(prompt=..., response=...)` with a classifier; weights load on first call."""

    def __init__(
        self,
        name_or_path: str,
        label_index: int = 1,
        use_logits: bool = True,
        batch_size: int = 32,
        max_length: int = 512,
        dtype: str = "float32",
        text_template: str = "{response}",
        device: str | None = None,
    ):
        if not name_or_path:
            raise ValueError("reward.name_or_path is empty")
        if label_index < 0:
            raise ValueError(f"reward.label_index must be >= 0, got {label_index}")
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"reward.batch_size and reward.max_length must be >= 1, got {batch_size}, {max_length}")
        check_dtype(dtype, "reward.dtype")
        check_template(text_template)
        self.name_or_path, self.label_index, self.use_logits = name_or_path, label_index, use_logits
        self.batch_size, self.max_length, self.dtype = batch_size, max_length, dtype
        self.text_template, self.device = text_template, device
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(self.name_or_path, dtype=dtype_of(self.dtype))
        n_labels = model.config.num_labels
        if self.label_index >= n_labels:
            raise ValueError(f"reward.label_index={self.label_index} but {self.name_or_path} has {n_labels} labels")
        tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
        if tokenizer.pad_token is None:  # decoder-only classifiers often ship without one
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.truncation_side = "left"  # keep the end of long texts: the response
        self._model, self._tokenizer = model.to(pick_device(self.device)).eval(), tokenizer

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if self._model is None:
            self._load()
        texts = [self.text_template.format(prompt=p, response=r) for p, r in zip(prompts, responses)]
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self._model.device)
        logits = self._model(**batch).logits.float()
        if not self.use_logits:
            # One output means a binary head scored by sigmoid; several mean softmax over labels.
            logits = logits.sigmoid() if logits.shape[-1] == 1 else logits.softmax(-1)
        return logits[:, self.label_index].tolist()

    def close(self) -> None:
        self._model = self._tokenizer = None
