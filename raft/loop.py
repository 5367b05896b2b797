"""The RAFT loop (paper section 3.2): sample K per prompt, score, select the best, fine-tune, repeat.

Every stage writes its result into `<run>/iter_NNN/` atomically, and a stage whose file exists is
not run again, so the same command restarted after a kill resumes at the first unfinished stage.
Stages only meet through those files and through `Policy` / `Reward`, so each can move to another
engine (vLLM sampling, a distributed trainer) without touching this file.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from raft.atomic import atomic_dir, atomic_write_text
from raft.distributed import is_rank_zero, train_along, wait_for, world_size
from raft.filters import apply_filters
from raft.policies.base import Policy
from raft.resources import peak_memory
from raft.rewards.base import Reward
from raft.samples import Sample, read_samples, write_samples

log = logging.getLogger("raft")


class RaftLoop:
    def __init__(
        self,
        policy: Policy,
        reward: Reward,
        sampler: Any,
        selector: Callable,
        module: Callable,
        trainer: Callable,
        run_dir: str | Path,
        iterations: int = 3,
        batch_size: int = 64,
        filters: Sequence[Callable] = (),
        evaluator: Any = None,
        monitor: Any = None,
        tracker: Any = None,
        teacher: Policy | None = None,
        track_kl: bool = True,
        keep_checkpoints: int = 1,
        seed: int = 0,
        init_checkpoint: str | Path | None = None,
    ):
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if batch_size < 1:
            raise ValueError(f"batch_size (the paper's b) must be >= 1, got {batch_size}")
        self.policy, self.reward, self.sampler, self.selector = policy, reward, sampler, selector
        self.module, self.trainer, self.run_dir = module, trainer, Path(run_dir)
        self.iterations, self.batch_size, self.filters = iterations, batch_size, list(filters)
        self.evaluator, self.monitor, self.tracker, self.teacher = evaluator, monitor, tracker, teacher
        self.track_kl, self.keep_checkpoints, self.seed = track_kl, keep_checkpoints, seed
        self.init_checkpoint = Path(init_checkpoint) if init_checkpoint else None  # e.g. an SFT stage's output

    # -- the loop ------------------------------------------------------------------------------
    def run(
        self,
        prompts: Sequence[str],
        eval_prompts: Sequence[str] | None = None,
        eval_references: Sequence[str] | None = None,
    ) -> list[dict]:
        history = []
        for t in range(self.iterations):
            history.append(self.iteration(t, prompts, eval_prompts, eval_references))
        return history

    def iteration(self, t: int, prompts, eval_prompts=None, eval_references=None) -> dict:
        stage = self.run_dir / f"iter_{t:03d}"
        done = stage / "metrics.json"
        if done.exists():
            return json.loads(done.read_text())
        if not is_rank_zero():
            return self.follow(t)
        started = time.time()
        checkpoint = self.checkpoint(t - 1)
        batch = prompt_batch(prompts, t, self.batch_size, self.seed)
        # 1. sample K responses per prompt (from a teacher when one is given: distillation)
        source, source_ckpt = (self.teacher, None) if self.teacher else (self.policy, checkpoint)
        seed_stage(self.seed, t)
        samples = self.stage(stage / "samples.jsonl", lambda: source.sample(source_ckpt, batch, self.sampler, stage))
        # 2. score them (and add log-probabilities where the ranking is KL-penalised)
        scored = self.stage(stage / "scored.jsonl", lambda: self.score(samples, stage, checkpoint))
        # 3. select the best (local / global / KL-penalised), then drop reward-hacking samples
        selected = self.stage(stage / "selected.jsonl", lambda: self.select(scored, stage))
        # 4. fine-tune the current policy on the selected set
        if not self.checkpoint_dir(t).exists():
            seed_stage(self.seed, t)  # a resumed run shuffles and drops out as the uninterrupted one did
            with atomic_dir(self.checkpoint_dir(t)) as tmp:
                self.policy.finetune(checkpoint, self.training_set(selected), tmp, self.module, self.trainer)
            release_memory()
        # 5. how far the policy this stage produced has moved from the initial one
        kl = self.stage(stage / "kl_samples.jsonl", lambda: self.kl_samples(t, batch)) if self.tracks_kl else []
        metrics = self.metrics(t, scored, selected, kl, stage, eval_prompts, eval_references)
        metrics["wall_time_s"] = round(time.time() - started, 1)
        if world_size() > 1:
            metrics["world_size"] = world_size()
        metrics.update(peak_memory())
        atomic_write_text(done, json.dumps(metrics, indent=2))
        who = "teacher" if self.teacher else "policy"
        log.info(
            "iteration %d (%d of %d): %s reward %.3f | best-of-K %.3f | selected distinct-2 %.3f, "
            "length %.1f | at the length cap %.0f%% | %.0f s",
            t,
            t + 1,
            self.iterations,
            who,
            metrics[f"{who}_reward"],
            metrics["teacher_best_of_k_reward" if self.teacher else "best_of_k_reward"],
            metrics.get("selected_distinct_2", float("nan")),
            metrics.get("selected_length", float("nan")),
            100 * metrics.get("capped_share", float("nan")),
            metrics["wall_time_s"],
        )
        if self.tracker is not None:
            self.tracker.log_iteration(metrics, selected)
        prune_checkpoints(self.checkpoint_dir, t, self.keep_checkpoints)
        return metrics

    def follow(self, t: int) -> dict:
        """Every rank but 0 (torchrun, SLURM tasks): wait for rank 0's selection, join the distributed
        fine-tuning (rank 0 saves the checkpoint), then wait for rank 0 to finish the stage."""
        stage = self.run_dir / f"iter_{t:03d}"
        selected = read_samples(wait_for(stage / "selected.jsonl"))
        if not self.checkpoint_dir(t).exists():  # rank 0 cannot finish a distributed fit without this rank
            seed_stage(self.seed, t)
            train_along(
                self.run_dir,
                lambda scratch: self.policy.finetune(
                    self.checkpoint(t - 1), self.training_set(selected), scratch, self.module, self.trainer
                ),
            )
            release_memory()
        return json.loads(wait_for(stage / "metrics.json").read_text())

    # -- stages --------------------------------------------------------------------------------
    def stage(self, path: Path, produce: Callable[[], list[Sample]]) -> list[Sample]:
        if path.exists():
            return read_samples(path)
        samples = produce()
        write_samples(path, samples)
        release_memory()
        return samples

    def score(self, samples: list[Sample], stage: Path, checkpoint: Path | None) -> list[Sample]:
        responses = [self.policy.response_for_reward(s, stage) for s in samples]
        rewards = self.reward([s.prompt for s in samples], responses)
        self.reward.close()  # never hold the reward model while the policy trains
        for s, r in zip(samples, rewards):
            s.reward = r
        if getattr(self.selector, "needs_log_probs", False):  # KL-penalised ranking (eq. 5): every sample
            add_log_probs(self.policy, samples, checkpoint, self.init_checkpoint)
        return samples

    @property
    def tracks_kl(self) -> bool:
        return self.track_kl and type(self.policy).log_probs is not Policy.log_probs

    def kl_samples(self, t: int, batch: list[tuple[int, str]]) -> list[Sample]:
        return kl_samples(
            self.policy,
            self.checkpoint_dir(t),
            self.init_checkpoint,
            batch,
            self.sampler,
            self.run_dir / f"iter_{t:03d}",
            self.seed,
            t,
        )

    def training_set(self, selected: list[Sample]) -> list[Sample]:
        """A teacher's token ids belong to its tokenizer: the student is trained on the text, tokenised its own way."""
        return [s.as_text() for s in selected] if self.teacher is not None else selected

    def select(self, scored: list[Sample], stage: Path) -> list[Sample]:
        removed: dict[str, int] = {}
        if getattr(self.sampler, "truncated", "train") == "drop":  # rank only what the model finished
            finished = [s for s in scored if not s.truncated]
            removed["truncated"] = len(scored) - len(finished)
            scored = finished
        selected = self.selector(scored)
        kept, filtered = apply_filters(self.filters, selected, stage)
        removed.update(filtered)
        if any(removed.values()):
            log.warning(
                "removed before or after selection: %s (%d selected of %d samples)",
                removed,
                len(kept),
                len(scored) + removed.get("truncated", 0),
            )
        atomic_write_text(stage / "filtered.json", json.dumps(removed))
        return kept

    # -- bookkeeping ---------------------------------------------------------------------------
    def metrics(self, t, scored, selected, kl, stage, eval_prompts, eval_references) -> dict:
        # with a teacher the K samples are the teacher's: their rewards are reported under its name
        who = "teacher" if self.teacher is not None else "policy"
        metrics = {
            "iteration": t,
            **reward_metrics(scored, who),
            "selected_reward": mean([s.reward for s in selected]),
            "selected_n": len(selected),
        }
        if scored and scored[0].finish_reason is not None:  # text samples: the share cut at max_new_tokens
            metrics["capped_share"] = mean([float(s.truncated) for s in scored])
            metrics["selected_capped_share"] = mean([float(s.truncated) for s in selected])
        if kl:  # KL(p_theta || p_0) of the policy this stage produced (see kl_samples)
            metrics["kl"] = mean([s.logp - s.ref_logp for s in kl])
        filtered = stage / "filtered.json"
        if filtered.exists():
            metrics.update({f"filtered_{k}": v for k, v in json.loads(filtered.read_text()).items()})
        if self.monitor is not None and self.policy.modality == "text":
            # diversity of the selected set against iteration 0: where reward hacking shows first
            texts = [s.response for s in selected]
            metrics.update(self.monitor.update(t, texts, baseline_dir=self.run_dir / "iter_000"))
        if self.evaluator is not None and eval_prompts and self.evaluator.due(t):
            result = self.evaluator.evaluate(
                self.policy, self.checkpoint_dir(t), eval_prompts, eval_references, stage / "eval"
            )
            metrics.update({f"eval_{k}": v for k, v in result.items()})
        return metrics

    def checkpoint_dir(self, t: int) -> Path:
        return self.run_dir / f"iter_{t:03d}" / "checkpoint"

    def checkpoint(self, t: int) -> Path | None:
        """The policy after iteration t; before the first one, the initial policy (None: the model itself)."""
        return self.checkpoint_dir(t) if t >= 0 else self.init_checkpoint

    def last_checkpoint(self) -> Path | None:
        return self.checkpoint(self.iterations - 1)


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def add_log_probs(policy: Policy, samples: list[Sample], checkpoint: Path | None, reference: Path | None) -> None:
    """log p of each sample under `checkpoint` and under the initial policy `reference` (logp, ref_logp)."""
    current = policy.log_probs(checkpoint, samples)
    initial = current if checkpoint == reference else policy.log_probs(reference, samples)
    for s, lp, ref in zip(samples, current, initial):
        s.logp, s.ref_logp = lp, ref


def kl_samples(
    policy: Policy,
    checkpoint: Path,
    reference: Path | None,
    batch: list[tuple[int, str]],
    sampler: Any,
    stage: Path,
    seed: int,
    t: int,
) -> list[Sample]:
    """One fresh response per prompt from `checkpoint` (the policy a stage produced), drawn from p_theta itself
    (temperature 1, no top-k / top-p), with its log-probability under that policy and the initial one: the
    mean of logp - ref_logp is an unbiased estimate of KL(p_theta || p_0) in nats per response, whatever
    temperature the stage sampled at."""
    seed_stage(seed, t)
    plain = dataclasses.replace(sampler, K=1, temperature=1.0, top_k=0, top_p=1.0)
    samples = policy.sample(checkpoint, batch, plain, stage)
    add_log_probs(policy, samples, checkpoint, reference)
    return samples


def reward_metrics(samples: Sequence[Sample], who: str = "policy") -> dict:
    """Mean reward of all K samples, and of the best sample per prompt (best-of-K), named after who sampled."""
    by_prompt: dict[int, list[float]] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt_idx, []).append(s.reward)
    best = "best_of_k_reward" if who == "policy" else f"{who}_best_of_k_reward"
    return {
        f"{who}_reward": mean([r for rs in by_prompt.values() for r in rs]),
        best: mean([max(rs) for rs in by_prompt.values()]),
    }


def seed_stage(seed: int, t: int) -> None:
    """Every random draw of stage t from its own seed, not from what earlier stages consumed: a run resumed in
    a new process samples and fine-tunes exactly as the uninterrupted run would have."""
    random.seed(seed * 1_000 + t)
    torch.manual_seed(seed * 1_000 + t)


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prompt_batch(prompts: Sequence[str], t: int, batch_size: int, seed: int) -> list[tuple[int, str]]:
    """The paper's D_t: b prompts per iteration, walking a seeded permutation (keyed by index)."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    start = t * batch_size
    picked = [order[(start + i) % len(order)] for i in range(min(batch_size, len(order)))]
    return [(i, prompts[i]) for i in picked]


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
