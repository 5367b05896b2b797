"""`task=reward_model`: train a Bradley-Terry reward model on preference pairs, report held-out accuracy, save it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl

from raft.infra import strict_json
from raft.infra.atomic import atomic_dir, is_complete
from raft.infra.distributed import is_rank_zero, wait_for
from raft.modules.reward_model import pairwise_accuracy
from raft.rewards.model_files import MINILM_ALIAS, load_backbone, save_reward_model, score_pairs
from raft.trainer.checks import check_partial
from raft.trainer.fit import fit

METRICS_FILE = "metrics.json"


class RewardModelTask:
    def __init__(
        self,
        data,
        backbone: str,
        module: Callable,
        trainer: Callable,
        output_dir: str,
        dtype: str = "float32",
        eval_batch_size: int = 32,
        seed: int = 0,
        logger: Callable | None = None,
    ):
        if backbone != MINILM_ALIAS:
            from raft.policies.models import check_model_name

            check_model_name(backbone, field="task.backbone")
        check_partial(module, "module")
        check_partial(trainer, "trainer")
        self.data, self.backbone, self.module, self.trainer = data, backbone, module, trainer
        self.output_dir, self.dtype = Path(output_dir), dtype
        self.eval_batch_size, self.seed, self.logger = eval_batch_size, seed, logger

    def run(self) -> dict:
        if is_complete(self.output_dir):  # resume: the folder appears once complete, and its manifest still holds
            metrics = strict_json.loads_numbers((self.output_dir / METRICS_FILE).read_text())
            print(f"reward model: {self.output_dir} exists, skipping training")
        else:
            metrics = self.train()
        print(
            f"reward model: held-out pairwise accuracy {metrics['test_accuracy']:.3f} on {metrics['test_pairs']} pairs"
        )
        print(
            f"reward model: saved in {self.output_dir}; "
            f"use it with \"reward=reward_model reward.path='{self.output_dir}'\""
        )
        return metrics

    def train(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        model, tokenizer = load_backbone(self.backbone, self.dtype)
        module = self.module(
            model=model, tokenizer=tokenizer, train_pairs=self.data.pairs("train"), val_pairs=self.data.pairs("test")
        )
        # the curves (loss, accuracy) go to the tracker of the folder above: output_dir appears only once complete
        tracker = self.logger(run_dir=self.output_dir.parent) if self.logger and is_rank_zero() else None
        try:
            fit(tracker.trainer(self.trainer, 0) if tracker else self.trainer, module)
        finally:
            if tracker is not None:
                tracker.close()
        if not is_rank_zero():  # another process of a torchrun / SLURM launch: rank 0 scores and saves
            return strict_json.loads_numbers(wait_for(self.output_dir / METRICS_FILE).read_text())
        test = self.data.pairs("test")
        chosen, rejected = score_pairs(
            module.model, tokenizer, test, self.eval_batch_size, module.max_length, module.text_template
        )
        metrics = {
            "test_accuracy": pairwise_accuracy(chosen, rejected),
            "test_pairs": len(test),
            "train_pairs": len(module.train_pairs),
            "backbone": self.backbone,
        }
        with atomic_dir(self.output_dir) as tmp:
            save_reward_model(module.model, tokenizer, tmp, module.text_template, module.max_length)
            (tmp / METRICS_FILE).write_text(strict_json.dumps(metrics, indent=2))
        return metrics
