"""`task=raft`: evaluate the initial policy, run the RAFT loop, evaluate the result, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl

from raft.atomic import atomic_write_text
from raft.distributed import is_rank_zero
from raft.loop import RaftLoop, training_cost
from raft.resources import reset_peak_memory
from raft.tasks.summary import plot_run, print_before_after
from raft.threads import check_torch_threads, use_torch_threads


class RaftTask:
    def __init__(
        self,
        output_dir: str,
        policy,
        reward,
        sampler,
        selector,
        module: Callable,
        trainer: Callable,
        data,
        filters: Sequence[Callable] = (),
        evaluator: Any = None,
        monitor: Any = None,
        logger: Callable | None = None,
        teacher=None,
        iterations: int = 4,
        batch_size: int = 32,
        track_kl: bool = True,
        keep_checkpoints: int = 1,
        seed: int = 0,
        init_checkpoint: str | None = None,
        torch_threads: int | None = None,
    ):
        check_torch_threads(torch_threads)
        self.torch_threads = torch_threads
        self.run_dir, self.data, self.evaluator, self.logger, self.seed = (
            Path(output_dir),
            data,
            evaluator,
            logger,
            seed,
        )
        self.policy, self.reward = policy, reward
        self.loop_args = dict(
            policy=policy,
            reward=reward,
            sampler=sampler,
            selector=selector,
            module=module,
            trainer=trainer,
            run_dir=self.run_dir,
            iterations=iterations,
            batch_size=batch_size,
            filters=filters,
            evaluator=evaluator,
            monitor=monitor,
            teacher=teacher,
            track_kl=track_kl,
            keep_checkpoints=keep_checkpoints,
            seed=seed,
            init_checkpoint=init_checkpoint,
        )
        RaftLoop(**self.loop_args)  # validate the loop's own arguments now, before any model loads

    def run(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        use_torch_threads(self.torch_threads)
        reset_peak_memory()  # this task's own peak, also inside a pipeline
        if not is_rank_zero():  # another process of a multi-GPU launch: it only joins the fine-tuning
            RaftLoop(**self.loop_args).run(self.data.prompts("train"))
            return {}
        tracker = self.logger(run_dir=self.run_dir) if self.logger else None
        loop = RaftLoop(**self.loop_args, tracker=tracker)
        test_prompts, references = self.data.prompts("test"), self.data.references("test")
        before = self.evaluate(loop.checkpoint(-1), test_prompts, references, "eval_before", shared=True)
        history = loop.run(self.data.prompts("train"), test_prompts, references)
        after = {k[5:]: v for k, v in history[-1].items() if k.startswith("eval_")} or self.evaluate(
            loop.last_checkpoint(), test_prompts, references, f"eval_after_{loop.last_checkpoint().parent.name}"
        )  # per checkpoint: runs can be extended
        after = {**after, **training_cost(history)}
        result = {"before": before, "after": after, "iterations": history}
        atomic_write_text(self.run_dir / "evaluation.json", json.dumps({"before": before, "after": after}, indent=2))
        if tracker is not None:
            tracker.close()
        plot_run(history, self.run_dir / "reward_curve.png")
        print_before_after(before, after, history, self.run_dir)
        return result

    def evaluate(self, checkpoint, prompts, references, folder: str, shared: bool = False) -> dict:
        if self.evaluator is None or not prompts:
            return {}
        return self.evaluator.evaluate(self.policy, checkpoint, prompts, references, self.run_dir / folder, shared)
