"""`task=diffusion_raft`: pretrain if needed, evaluate, RAFT's iterations, evaluate again, report (paper section 5).

The report is the paper's Table 8 (`raft.evaluation.image`, `raft.report.image_tables`): each evaluation
reward's mean ± std over images of in-domain and out-of-domain prompts, before and after, plus image grids
that put the same noise seeds before and after side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from raft.evaluation.image import SPLITS, ImageEvaluator
from raft.infra.atomic import atomic_write_text
from raft.infra.console import show
from raft.report.image_grids import before_after_grid
from raft.report.image_tables import run_table
from raft.sampling.images import save_png
from raft.sampling.samples import read_samples
from raft.tasks.raft import RaftTask

log = logging.getLogger("raft")


class DiffusionRaftTask(RaftTask):
    """RAFT's step on an image policy, with the image envelope: pretraining, Table 8 and the image grids."""

    def __init__(
        self,
        eval_rewards: dict[str, Any] | None = None,
        eval_sampler=None,
        grid_prompts: int = 10,
        grid_samples: int = 8,
        **raft: Any,  # RAFT's step and the runner: policy, reward, sampler, selector, ..., iterations, seed
    ):
        if eval_sampler is None:
            raise ValueError("task.eval_sampler is required: the sampler of the before/after evaluation")
        if grid_prompts < 1 or grid_samples < 1:
            raise ValueError("task.grid_prompts and task.grid_samples must be >= 1")
        super().__init__(**raft)
        rewards = dict(eval_rewards) if eval_rewards else {type(self.reward).__name__: self.reward}
        self.image_evaluator = ImageEvaluator(self.policy, rewards, eval_sampler, self.data)
        self.eval_sampler, self.grid_prompts, self.grid_samples = eval_sampler, grid_prompts, grid_samples

    # -- the image envelope around the runner's iterations --------------------------------------
    def evaluate_start(self, prompts, references) -> dict:
        return self.image_evaluator.evaluate(None, self.run_dir / "eval_before")

    def evaluate_end(self, history: list[dict], prompts, references) -> dict:
        return self.image_evaluator.evaluate(self.last_checkpoint(), self.run_dir / "eval_after")

    def summarise(self, before: dict, after: dict, history: list[dict]) -> None:
        table = run_table(before, after)
        atomic_write_text(self.run_dir / "table.md", table + "\n")
        for split in SPLITS:
            self.write_grid(split)
        show(
            f"RAFT before/after, reward mean ± std over {self.eval_sampler.K} images per prompt:\n{table}\n"
            f"run folder: {self.run_dir}  (table.md, grid_*.png, reward_curve.png, metrics.csv, iter_*/)"
        )

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
