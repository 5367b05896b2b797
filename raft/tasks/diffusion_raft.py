"""`task=diffusion_raft`: pretrain if needed, evaluate, run the RAFT loop, evaluate again, report (paper section 5).

The report is the paper's Table 8: each evaluation reward's mean ± std over images of in-domain prompts
(data split "train", the ones RAFT trains on) and out-of-domain prompts (split "test"), before and after,
plus image grids that put the same noise seeds before and after side by side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
from PIL import Image

from raft.atomic import atomic_write_text
from raft.report.image_grids import before_after_grid
from raft.images import save_png
from raft.loop import RaftLoop
from raft.samples import read_samples, write_samples
from raft.tasks.summary import plot_run
from raft.threads import check_torch_threads, use_torch_threads

log = logging.getLogger("raft")
SPLITS = {"in_domain": "train", "out_of_domain": "test"}


class DiffusionRaftTask:
    def __init__(self, output_dir: str, policy, reward, sampler, selector, module: Callable, trainer: Callable,
                 data, filters: Sequence[Callable] = (), logger: Callable | None = None,
                 eval_rewards: dict[str, Any] | None = None, eval_samples_per_prompt: int = 8,
                 grid_prompts: int = 10, grid_samples: int = 8, iterations: int = 4, batch_size: int = 10,
                 keep_checkpoints: int = 1, seed: int = 0, torch_threads: int | None = None):
        check_torch_threads(torch_threads)
        if eval_samples_per_prompt < 1:
            raise ValueError(f"task.eval_samples_per_prompt must be >= 1, got {eval_samples_per_prompt}")
        if grid_prompts < 1 or grid_samples < 1:
            raise ValueError("task.grid_prompts and task.grid_samples must be >= 1")
        self.run_dir, self.policy, self.data, self.logger, self.seed = Path(output_dir), policy, data, logger, seed
        self.reward = reward
        self.eval_rewards = dict(eval_rewards) if eval_rewards else {type(reward).__name__: reward}
        self.eval_sampler = dataclasses.replace(sampler, K=eval_samples_per_prompt)
        self.grid_prompts, self.grid_samples, self.torch_threads = grid_prompts, grid_samples, torch_threads
        # Diffusion models have no sequence log-probabilities: no KL tracking, no KL-penalised ranking.
        self.loop_args = dict(policy=policy, reward=reward, sampler=sampler, selector=selector, module=module,
                              trainer=trainer, run_dir=self.run_dir, iterations=iterations, batch_size=batch_size,
                              filters=filters, track_kl=False, keep_checkpoints=keep_checkpoints, seed=seed)
        RaftLoop(**self.loop_args)  # validate the loop's arguments before any model loads

    def run(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        use_torch_threads(self.torch_threads)
        if hasattr(self.policy, "pretrain"):
            self.policy.pretrain()  # no-op when its checkpoint folder exists
        tracker = self.logger(run_dir=self.run_dir) if self.logger else None
        loop = RaftLoop(**self.loop_args, tracker=tracker)
        before = self.evaluate(None, "eval_before")
        history = loop.run(self.data.prompts("train"))
        after = self.evaluate(loop.last_checkpoint(), "eval_after")
        if tracker is not None:
            tracker.close()
        table = before_after_table(before, after)
        atomic_write_text(self.run_dir / "evaluation.json", json.dumps({"before": before, "after": after}, indent=2))
        atomic_write_text(self.run_dir / "table.md", table + "\n")
        plot_run(history, self.run_dir / "reward_curve.png")
        for split in SPLITS:
            self.write_grid(split)
        print(f"\nRAFT before/after, reward mean ± std over {self.eval_sampler.K} images per prompt:\n{table}")
        print(f"run folder: {self.run_dir}  (table.md, grid_*.png, reward_curve.png, metrics.csv, iter_*/)")
        return {"before": before, "after": after, "iterations": history}

    # -- evaluation ----------------------------------------------------------------------------
    def eval_prompts(self, split: str) -> list[str]:
        return list(dict.fromkeys(self.data.prompts(split)))  # unique prompts, in order (train may repeat)

    def evaluate(self, checkpoint: Path | None, folder: str) -> dict:
        """{split: {reward name: {mean, std, n}}}. Same sub-folder names before and after: same noise seeds."""
        result = {}
        for split, data_split in SPLITS.items():
            prompts = self.eval_prompts(data_split)
            if prompts:
                result[split] = self.evaluate_split(checkpoint, prompts, self.run_dir / folder / split)
        return result

    def evaluate_split(self, checkpoint: Path | None, prompts: list[str], out_dir: Path) -> dict:
        cached = out_dir / "eval_metrics.json"
        if cached.exists():
            return json.loads(cached.read_text())
        samples_file = out_dir / "samples.jsonl"
        if samples_file.exists():
            samples = read_samples(samples_file)
        else:
            samples = self.policy.sample(checkpoint, list(enumerate(prompts)), self.eval_sampler, out_dir)
            write_samples(samples_file, samples)
        images = [self.policy.response_for_reward(s, out_dir) for s in samples]
        metrics = {}
        for name, reward in self.eval_rewards.items():
            scores = reward([s.prompt for s in samples], images)
            reward.close()
            metrics[name] = {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "n": len(scores)}
        atomic_write_text(cached, json.dumps(metrics, indent=2))
        return metrics

    # -- grids ---------------------------------------------------------------------------------
    def write_grid(self, split: str) -> None:
        """Rows = prompts, columns = noise seeds; before on the left, after on the right, and under every
        image a bar of its training reward."""
        halves = [self.grid_half(self.run_dir / folder / split) for folder in ("eval_before", "eval_after")]
        if not all(halves):
            return
        (before, before_scores), (after, after_scores) = halves
        grid = before_after_grid([("before", before, before_scores), ("RAFT", after, after_scores)],
                                 columns=min(self.grid_samples, self.eval_sampler.K),
                                 scale=max(1, 96 // before[0].width))
        save_png(grid, self.run_dir / f"grid_{split}.png")

    def grid_half(self, folder: Path) -> tuple[list[Image.Image], list[float]] | None:
        path = folder / "samples.jsonl"
        if not path.exists():
            return None
        samples = [s for s in read_samples(path) if s.prompt_idx < self.grid_prompts and s.sample_idx < self.grid_samples]
        samples.sort(key=lambda s: (s.prompt_idx, s.sample_idx))
        images = [self.policy.response_for_reward(s, folder) for s in samples]
        scores = self.reward([s.prompt for s in samples], images)
        self.reward.close()
        return images, scores


def _cell(stats: dict | None) -> str:
    return f"{stats['mean']:.3g} ± {stats['std']:.2g}" if stats else "-"


def before_after_table(before: dict, after: dict) -> str:
    """Markdown in the layout of the paper's Table 8."""
    names = list(dict.fromkeys(name for result in (before, after) for split in result.values() for name in split))
    lines = ["| metric | in-domain before | in-domain RAFT | out-of-domain before | out-of-domain RAFT |",
             "|---|---|---|---|---|"]
    for name in names:
        cells = [_cell(result.get(split, {}).get(name)) for split in SPLITS for result in (before, after)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
