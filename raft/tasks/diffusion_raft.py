"""`task=diffusion_raft`: pretrain if needed, evaluate, run the RAFT loop, evaluate again, report (paper section 5).

The report is the paper's Table 8 (`raft.evaluation_image`, `raft.report.image_tables`): each evaluation
reward's mean ± std over images of in-domain and out-of-domain prompts, before and after, plus image grids
that put the same noise seeds before and after side by side.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
from PIL import Image

from raft.atomic import atomic_write_text
from raft.evaluation_image import SPLITS, ImageEvaluator
from raft.images import save_png
from raft.loop import RaftLoop
from raft.report.image_grids import before_after_grid
from raft.report.image_tables import run_table
from raft.samples import read_samples
from raft.tasks.summary import plot_run
from raft.threads import check_torch_threads, use_torch_threads

log = logging.getLogger("raft")


class DiffusionRaftTask:
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
        logger: Callable | None = None,
        eval_rewards: dict[str, Any] | None = None,
        eval_sampler=None,
        grid_prompts: int = 10,
        grid_samples: int = 8,
        iterations: int = 4,
        batch_size: int = 10,
        keep_checkpoints: int = 1,
        seed: int = 0,
        torch_threads: int | None = None,
    ):
        check_torch_threads(torch_threads)
        if eval_sampler is None:
            raise ValueError("task.eval_sampler is required: the sampler of the before/after evaluation")
        if grid_prompts < 1 or grid_samples < 1:
            raise ValueError("task.grid_prompts and task.grid_samples must be >= 1")
        self.run_dir, self.policy, self.data, self.logger, self.seed = Path(output_dir), policy, data, logger, seed
        self.reward = reward
        self.eval_sampler = eval_sampler
        self.evaluator = ImageEvaluator(
            policy, dict(eval_rewards) if eval_rewards else {type(reward).__name__: reward}, eval_sampler, data
        )
        self.grid_prompts, self.grid_samples, self.torch_threads = grid_prompts, grid_samples, torch_threads
        # Diffusion models have no sequence log-probabilities: no KL tracking, no KL-penalised ranking.
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
            track_kl=False,
            keep_checkpoints=keep_checkpoints,
            seed=seed,
        )
        RaftLoop(**self.loop_args)  # validate the loop's arguments before any model loads

    def run(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        use_torch_threads(self.torch_threads)
        if hasattr(self.policy, "pretrain"):
            self.policy.pretrain()  # no-op when its checkpoint folder exists
        tracker = self.logger(run_dir=self.run_dir) if self.logger else None
        loop = RaftLoop(**self.loop_args, tracker=tracker)
        before = self.evaluator.evaluate(None, self.run_dir / "eval_before")
        history = loop.run(self.data.prompts("train"))
        after = self.evaluator.evaluate(loop.last_checkpoint(), self.run_dir / "eval_after")
        if tracker is not None:
            tracker.close()
        table = run_table(before, after)
        atomic_write_text(self.run_dir / "evaluation.json", json.dumps({"before": before, "after": after}, indent=2))
        atomic_write_text(self.run_dir / "table.md", table + "\n")
        plot_run(history, self.run_dir / "reward_curve.png")
        for split in SPLITS:
            self.write_grid(split)
        print(f"\nRAFT before/after, reward mean ± std over {self.eval_sampler.K} images per prompt:\n{table}")
        print(f"run folder: {self.run_dir}  (table.md, grid_*.png, reward_curve.png, metrics.csv, iter_*/)")
        return {"before": before, "after": after, "iterations": history}

    # -- grids ---------------------------------------------------------------------------------
    def write_grid(self, split: str) -> None:
        """Rows = prompts, columns = noise seeds; before on the left, after on the right, and under every
        image a bar of its training reward."""
        halves = [self.grid_half(self.run_dir / folder / split) for folder in ("eval_before", "eval_after")]
        if not all(halves):
            return
        (before, before_scores), (after, after_scores) = halves
        grid = before_after_grid(
            [("before", before, before_scores), ("RAFT", after, after_scores)],
            columns=min(self.grid_samples, self.eval_sampler.K),
            scale=max(1, 96 // before[0].width),
        )
        save_png(grid, self.run_dir / f"grid_{split}.png")

    def grid_half(self, folder: Path) -> tuple[list[Image.Image], list[float]] | None:
        path = folder / "samples.jsonl"
        if not path.exists():
            return None
        samples = [
            s for s in read_samples(path) if s.prompt_idx < self.grid_prompts and s.sample_idx < self.grid_samples
        ]
        samples.sort(key=lambda s: (s.prompt_idx, s.sample_idx))
        images = [self.policy.response_for_reward(s, folder) for s in samples]
        scores = self.reward([s.prompt for s in samples], images)
        self.reward.close()
        return images, scores
