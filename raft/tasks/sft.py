"""`task=sft`: supervised fine-tuning of the policy on the chosen responses of preference pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl

from raft.infra.atomic import atomic_dir, is_complete
from raft.infra.distributed import is_rank_zero, train_along, wait_for
from raft.sampling.samples import Sample
from raft.trainer.checks import check_partial


class SFTTask:
    def __init__(
        self,
        policy,
        data,
        module: Callable,
        trainer: Callable,
        output_dir: str,
        max_examples: int | None = None,
        seed: int = 0,
        logger: Callable | None = None,
    ):
        if max_examples is not None and max_examples < 1:
            raise ValueError(f"task.max_examples must be >= 1 or null, got {max_examples}")
        check_partial(module, "module")
        check_partial(trainer, "trainer")
        self.policy, self.data, self.module, self.trainer = policy, data, module, trainer
        self.checkpoint, self.max_examples, self.seed = Path(output_dir) / "checkpoint", max_examples, seed
        self.logger = logger  # the run's tracker: the fine-tuning curves

    def run(self) -> Path:
        if is_complete(self.checkpoint):
            print(f"sft: reusing {self.checkpoint}")
            return self.checkpoint
        pl.seed_everything(self.seed, workers=True, verbose=False)
        pairs = self.data.pairs("train")[: self.max_examples]
        examples = [Sample(prompt_idx=i, prompt=p.prompt, response=p.chosen) for i, p in enumerate(pairs)]
        if not is_rank_zero():  # another process of a torchrun / SLURM launch: train along, rank 0 saves
            train_along(
                self.checkpoint.parent,
                lambda scratch: self.policy.finetune(None, examples, scratch, self.module, self.trainer),
            )
            return wait_for(self.checkpoint)
        tracker = self.logger(run_dir=self.checkpoint.parent) if self.logger else None
        try:
            with atomic_dir(self.checkpoint) as tmp:
                trainer = tracker.trainer(self.trainer, 0) if tracker else self.trainer
                self.policy.finetune(None, examples, tmp, self.module, trainer)
        finally:
            if tracker is not None:
                tracker.close()
        print(f"sft: trained on {len(examples)} chosen responses -> {self.checkpoint}")
        return self.checkpoint
