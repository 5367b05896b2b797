"""The iteration runner every RAFT-style task is: evaluate the start, run the iterations, evaluate the end, report.

It owns what RAFT and PPO share: the `iter_NNN/` folders, `metrics.json` written last as the done marker (a
restarted command skips finished iterations), the prompt walk D_t, evaluation cadence, timing and peak memory,
tracking (`metrics.csv`, W&B), checkpoint pruning, ranks (torchrun / SLURM) and the before/after envelope
(`evaluation.json`, `reward_curve.png`, the printed table). A task subclasses it and supplies one iteration
in `step` (RAFT: raft/tasks/raft.py, PPO: raft/tasks/ppo.py).
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch

from raft.infra import progress, strict_json
from raft.infra.atomic import atomic_write_text, check_checkpoint, is_complete
from raft.infra.distributed import is_rank_zero, wait_for, world_size
from raft.infra.errors import StageError
from raft.infra.resources import (
    bound_heap_growth,
    check_heap_mmap_threshold,
    peak_memory,
    release_memory,
    reset_peak_memory,
    stage_cost,
)
from raft.infra.threads import check_torch_threads, use_torch_threads
from raft.policies.base import Policy
from raft.sampling.samples import Sample, read_samples, write_samples
from raft.tasks.summary import plot_run, print_before_after
from raft.trackers.tracking import Tracker
from raft.trainer.checks import check_partial

log = logging.getLogger("raft")


class Runner:
    distributed = True  # False: the step runs in one process only, and a multi-process launch is refused

    def __init__(
        self,
        output_dir: str | Path,
        policy: Policy,
        data: Any = None,
        evaluator: Any = None,
        logger: Callable | None = None,
        iterations: int = 4,
        batch_size: int = 32,
        keep_checkpoints: int = 1,
        seed: int = 0,
        init_checkpoint: str | Path | None = None,
        torch_threads: int | None = None,
        heap_mmap_threshold_mb: float | None = None,
    ):
        check_torch_threads(torch_threads)
        check_heap_mmap_threshold(heap_mmap_threshold_mb)
        if iterations < 1:
            raise ValueError(f"task.iterations must be >= 1, got {iterations}")
        if batch_size < 1:
            raise ValueError(f"task.batch_size (the paper's b: prompts per iteration) must be >= 1, got {batch_size}")
        if world_size() > 1 and not self.distributed:
            raise ValueError(
                f"{type(self).__name__} runs in one process, but this launch has {world_size()} (torchrun / SLURM "
                "tasks): start it as a single process"
            )
        check_partial(logger, "logger")
        if init_checkpoint:
            check_checkpoint(Path(init_checkpoint), "task.init_checkpoint")
        self.run_dir, self.policy, self.data, self.evaluator, self.logger = (
            Path(output_dir),
            policy,
            data,
            evaluator,
            logger,
        )
        self.iterations, self.batch_size, self.keep_checkpoints, self.seed = (
            iterations,
            batch_size,
            keep_checkpoints,
            seed,
        )
        self.init_checkpoint = Path(init_checkpoint) if init_checkpoint else None  # e.g. an SFT stage's output
        self.torch_threads, self.heap_mmap_threshold_mb = torch_threads, heap_mmap_threshold_mb
        self.tracker: Tracker | None = None  # rank 0's, while `run` runs
        self.iteration_seconds: list[float] = []  # wall times of the iterations this process ran (the ETA)

    # -- what a task supplies ------------------------------------------------------------------
    def step(self, t: int, batch: list[tuple[int, str]]) -> tuple[dict, list[Sample]]:
        """Iteration t on the prompts `batch` (rank 0): write `checkpoint_dir(t)`; return the iteration's
        metrics and the samples it trained on (for the tracker)."""
        raise NotImplementedError

    def follow(self, t: int) -> None:
        """Iteration t on a rank other than 0, while rank 0 runs `step` (e.g. join a distributed fine-tuning)."""

    def release(self) -> None:
        """Free what the iterations held (models kept across iterations) before the final evaluation."""

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        use_torch_threads(self.torch_threads)
        bound_heap_growth(self.heap_mmap_threshold_mb)
        reset_peak_memory()  # this task's own peak, also inside a pipeline
        self.prepare()
        if not is_rank_zero():  # another process of a multi-GPU launch: it only follows rank 0's iterations
            self.run_iterations(self.data.prompts("train"))
            return {}
        # metrics.csv comes from the tracker; without a logger config, a CSV-only one
        tracker = self.tracker = self.logger(run_dir=self.run_dir) if self.logger else Tracker(self.run_dir)
        prompts, references = self.held_out()
        before = self.evaluate_start(prompts, references)
        history = self.run_iterations(self.data.prompts("train"), prompts, references, tracker)
        self.release()
        after = self.evaluate_end(history, prompts, references)
        atomic_write_text(
            self.run_dir / "evaluation.json", strict_json.dumps({"before": before, "after": after}, indent=2)
        )
        plot_run(history, self.run_dir / "reward_curve.png")
        self.summarise(before, after, history)
        tracker.close()  # after the figures: the trackers get them too
        return {"before": before, "after": after, "iterations": history}

    def run_iterations(
        self,
        prompts: Sequence[str],
        eval_prompts: Sequence[str] | None = None,
        eval_references: Sequence[str] | None = None,
        tracker: Any = None,
    ) -> list[dict]:
        return [self.iteration(t, prompts, eval_prompts, eval_references, tracker) for t in range(self.iterations)]

    def iteration(self, t: int, prompts, eval_prompts=None, eval_references=None, tracker=None) -> dict:
        done = self.stage_dir(t) / "metrics.json"
        if done.exists():
            return strict_json.loads_numbers(done.read_text())
        if not is_rank_zero():
            self.follow(t)
            return strict_json.loads_numbers(wait_for(done).read_text())
        self.check_previous(t, prompts, eval_prompts, eval_references, tracker)
        started, cost = time.time(), {}
        with progress.iteration(t, self.iterations):
            with stage_cost(cost, "step"):  # the iteration's own peak, apart from its evaluation's
                metrics, trained_on = self.step(t, prompt_batch(prompts, t, self.batch_size, self.seed))
            metrics.update(cost)
            if self.evaluator is not None and eval_prompts and self.evaluator.due(t):
                result = self.evaluate(self.checkpoint_dir(t), eval_prompts, eval_references, f"iter_{t:03d}/eval")
                metrics.update({f"eval_{k}": v for k, v in result.items()})
        metrics["wall_time_s"] = round(time.time() - started, 1)
        if world_size() > 1:
            metrics["world_size"] = world_size()
        metrics.update(peak_memory())
        atomic_write_text(done, strict_json.dumps(metrics, indent=2))
        self.log(t, metrics)
        if tracker is not None:
            tracker.log_iteration(metrics, trained_on)
        prune_checkpoints(self.checkpoint_dir, t, self.keep_checkpoints)
        return metrics

    def check_previous(self, t: int, prompts, eval_prompts, eval_references, tracker) -> None:
        """Iteration t starts from checkpoint t - 1: if that folder fails its manifest check (truncated or
        damaged weights), redo iteration t - 1 when the checkpoint before it is still there, else say how."""
        previous = self.checkpoint_dir(t - 1)
        if t == 0 or is_complete(previous):
            return
        if t >= 2 and not is_complete(self.checkpoint_dir(t - 2)):
            raise StageError(
                f"{previous} is damaged or incomplete (its manifest check failed) and iteration {t - 1} cannot be "
                f"redone: {self.checkpoint_dir(t - 2)} was pruned (task.keep_checkpoints={self.keep_checkpoints}); "
                "start a new run folder, or keep more checkpoints"
            )
        log.warning("%s failed its manifest check: redoing iteration %d", previous, t - 1)
        (self.stage_dir(t - 1) / "metrics.json").unlink(missing_ok=True)
        self.iteration(t - 1, prompts, eval_prompts, eval_references, tracker)

    def log(self, t: int, metrics: dict) -> None:
        who = "teacher" if "teacher_reward" in metrics else "policy"  # a teacher's samples carry its name
        log.info(
            "iteration %d (%d of %d): %s reward %.3f | best-of-K %.3f | selected distinct-2 %.3f, "
            "length %.1f | at the length cap %.0f%% | %.0f s%s",
            t,
            t + 1,
            self.iterations,
            who,
            metrics[f"{who}_reward"],
            metrics["teacher_best_of_k_reward" if who == "teacher" else "best_of_k_reward"],
            metrics.get("selected_distinct_2", float("nan")),
            metrics.get("selected_length", float("nan")),
            100 * metrics.get("capped_share", float("nan")),
            metrics["wall_time_s"],
            f" | {left}" if (left := self.time_left(t, metrics["wall_time_s"])) else "",
        )

    def time_left(self, t: int, seconds: float) -> str:
        """The run's ETA after iteration t, from the iterations this process has run so far."""
        self.iteration_seconds.append(seconds)
        done = len(self.iteration_seconds)
        return progress.eta(done, done + self.iterations - 1 - t, sum(self.iteration_seconds))

    def tracked(self, trainer: Callable, t: int) -> Callable:
        """Iteration t's Trainer partial, its curves sent to the run's tracker (when there is one)."""
        return self.tracker.trainer(trainer, t) if self.tracker is not None else trainer

    # -- the before/after envelope (held-out prompts; the image task replaces it) --------------
    def prepare(self) -> None:
        """What the policy builds before the first evaluation (the digits model pretrains itself)."""
        self.policy.prepare()

    def held_out(self) -> tuple[list[str], list[str] | None]:
        if self.evaluator is None:
            return [], None
        return self.data.prompts("test"), self.data.references("test")

    def evaluate_start(self, prompts, references) -> dict:
        return self.evaluate(self.checkpoint(-1), prompts, references, "eval_before", shared=True)

    def evaluate_end(self, history: list[dict], prompts, references) -> dict:
        """The last iteration's evaluation when it had one, else the last checkpoint's in a folder of its own
        (runs can be extended); with what producing it cost."""
        last = self.last_checkpoint()
        after = {k[5:]: v for k, v in history[-1].items() if k.startswith("eval_")} or self.evaluate(
            last, prompts, references, f"eval_after_{last.parent.name}"
        )
        return {**after, **training_cost(history)}

    def evaluate(self, checkpoint, prompts, references, folder: str, shared: bool = False) -> dict:
        if self.evaluator is None or not prompts:
            return {}
        with progress.stage("evaluation"):
            return self.evaluator.evaluate(self.policy, checkpoint, prompts, references, self.run_dir / folder, shared)

    def summarise(self, before: dict, after: dict, history: list[dict]) -> None:
        print_before_after(before, after, history, self.run_dir)

    # -- folders -------------------------------------------------------------------------------
    def stage(self, path: Path, produce: Callable[[], list[Sample]]) -> list[Sample]:
        """A stage file's samples: read back when an earlier run wrote it, else produced and written atomically."""
        if path.exists():
            return read_samples(path)
        samples = produce()
        write_samples(path, samples)
        release_memory()
        return samples

    def stage_dir(self, t: int) -> Path:
        return self.run_dir / f"iter_{t:03d}"

    def checkpoint_dir(self, t: int) -> Path:
        return self.stage_dir(t) / "checkpoint"

    def checkpoint(self, t: int) -> Path | None:
        """The policy after iteration t; before the first one, the initial policy (None: the model itself)."""
        return self.checkpoint_dir(t) if t >= 0 else self.init_checkpoint

    def last_checkpoint(self) -> Path | None:
        return self.checkpoint(self.iterations - 1)


def prompt_batch(prompts: Sequence[str], t: int, batch_size: int, seed: int) -> list[tuple[int, str]]:
    """The paper's D_t: b prompts per iteration, walking a seeded permutation (keyed by index)."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    start = t * batch_size
    picked = [order[(start + i) % len(order)] for i in range(min(batch_size, len(order)))]
    return [(i, prompts[i]) for i in picked]


def seed_stage(seed: int, t: int) -> None:
    """Every random draw of stage t from its own seed, not from what earlier stages consumed: a run resumed in
    a new process samples and fine-tunes exactly as the uninterrupted run would have."""
    random.seed(seed * 1_000 + t)
    torch.manual_seed(seed * 1_000 + t)


def prune_checkpoints(checkpoint_dir: Callable[[int], Path], t: int, keep: int) -> None:
    """Keep the newest `keep` checkpoints (0 = all; full models are large); resuming needs only the newest."""
    if keep <= 0:
        return
    for old in range(t - keep, -1, -1):
        if not checkpoint_dir(old).exists():
            break
        shutil.rmtree(checkpoint_dir(old))


def training_cost(history: Sequence[dict]) -> dict:
    """What producing the final policy cost: summed iteration wall time and the peak memory seen."""
    cost = {"wall_time_s": round(sum(h.get("wall_time_s", 0.0) for h in history), 1)}
    for key in ("peak_rss_mb", "peak_gpu_memory_mb"):
        peaks = [h[key] for h in history if key in h]
        if peaks:
            cost[key] = max(peaks)
    return cost
