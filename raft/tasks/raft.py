"""`task=raft`: the RAFT iteration (paper section 3.2): sample K per prompt, score, select the best, fine-tune.

The runner (raft/runner.py) evaluates the start, calls `step` once per iteration and evaluates the end.
Every stage writes its result into `<run>/iter_NNN/` atomically, and a stage whose file exists is
not run again, so the same command restarted after a kill resumes at the first unfinished stage.
Stages only meet through those files and through `Policy` / `Reward`, so each can move to another
engine (vLLM sampling, a distributed trainer) without touching this file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from raft.atomic import atomic_dir, atomic_write_text, is_complete
from raft.distributed import global_rank, train_along, wait_for, world_size
from raft.filters import apply_filters
from raft.kl import add_log_probs, kl_estimate, kl_samples
from raft.metrics.rewards import mean, reward_metrics
from raft.policies.base import TRAINING_STATS, Policy
from raft.resources import release_memory, stage_cost
from raft.rewards.base import Reward
from raft.runner import Runner, prompt_batch, seed_stage
from raft.samples import Sample, read_samples, write_samples
from raft.selection import ThresholdSelection, drop_uniform_groups
from raft.sharding import merge_parts, read_part, remove_parts, seed_share, share, write_part
from raft.validation import check_partial

log = logging.getLogger("raft")


class RaftTask(Runner):
    def __init__(
        self,
        policy: Policy,
        reward: Reward,
        sampler: Any,
        selector: Callable,
        module: Callable,
        trainer: Callable,
        filters: Sequence[Callable] = (),
        monitor: Any = None,
        teacher: Policy | None = None,
        track_kl: bool = True,
        **run: Any,  # the runner's: output_dir, data, evaluator, logger, iterations, batch_size, seed, ...
    ):
        check_partial(module, "module")
        check_partial(trainer, "trainer")
        super().__init__(policy=policy, **run)
        self.reward, self.sampler, self.selector, self.module, self.trainer = reward, sampler, selector, module, trainer
        self.filters, self.monitor, self.teacher, self.track_kl = list(filters), monitor, teacher, track_kl

    # -- one iteration -------------------------------------------------------------------------
    def step(self, t: int, batch: list[tuple[int, str]]) -> tuple[dict, list[Sample]]:
        stage = self.stage_dir(t)
        checkpoint = self.checkpoint(t - 1)
        costs: dict[str, float] = {}  # seconds and peak memory of each stage
        # 1. sample K responses per prompt (from a teacher when one is given: distillation)
        source, source_ckpt = self.sample_source(checkpoint)
        if world_size() > 1:  # every rank samples and scores its share; rank 0 merges the parts
            self.share_stage(t, batch, checkpoint)
            self.merge_stage(t, batch)
        seed_stage(self.seed, t)
        with stage_cost(costs, "sampling"):
            samples = self.stage(
                stage / "samples.jsonl", lambda: source.sample(source_ckpt, batch, self.sampler, stage)
            )
        # 2. score them (and add log-probabilities where the ranking is KL-penalised)
        with stage_cost(costs, "scoring"):
            scored = self.stage(stage / "scored.jsonl", lambda: self.score(samples, stage, checkpoint))
        # 3. select the best (local / global / KL-penalised / threshold), then drop reward-hacking samples
        selected = self.stage(stage / "selected.jsonl", lambda: self.select(scored, stage))
        # 4. fine-tune the current policy on the selected set (again if its folder fails its manifest check)
        if not is_complete(self.checkpoint_dir(t)):
            seed_stage(self.seed, t)  # a resumed run shuffles and drops out as the uninterrupted one did
            with stage_cost(costs, "training"), atomic_dir(self.checkpoint_dir(t)) as tmp:
                if selected:
                    trainer = self.tracked(self.trainer, t)
                    self.policy.finetune(checkpoint, self.training_set(selected), tmp, self.module, trainer)
                else:  # the selector kept nothing (no sample reached the threshold): the policy stays as it was
                    self.policy.save_unchanged(checkpoint, tmp)
            release_memory()
        # 5. how far the policy this stage produced has moved from the initial one
        with stage_cost(costs, "kl"):
            kl = self.stage(stage / "kl_samples.jsonl", lambda: self.kl_samples(t, batch)) if self.tracks_kl else []
        metrics = self.metrics(t, scored, selected, kl, stage)
        metrics.update(costs)
        return metrics, selected

    def follow(self, t: int) -> None:
        """Every rank but 0 (torchrun, SLURM tasks): sample and score its share of the stage, wait for rank 0's
        selection and join the distributed fine-tuning (rank 0 saves the checkpoint); the runner then waits for
        rank 0 to finish the stage."""
        self.share_stage(
            t, prompt_batch(self.data.prompts("train"), t, self.batch_size, self.seed), self.checkpoint(t - 1)
        )
        selected = read_samples(wait_for(self.stage_dir(t) / "selected.jsonl"))
        # rank 0 cannot finish a distributed fit without this rank (an empty selection has no fit to join)
        if selected and not is_complete(self.checkpoint_dir(t)):
            seed_stage(self.seed, t)
            train_along(
                self.run_dir,
                lambda scratch: self.policy.finetune(
                    self.checkpoint(t - 1), self.training_set(selected), scratch, self.module, self.trainer
                ),
            )
            release_memory()

    # -- stages --------------------------------------------------------------------------------
    def sample_source(self, checkpoint: Path | None) -> tuple[Policy, Path | None]:
        return (self.teacher, None) if self.teacher else (self.policy, checkpoint)

    def share_stage(self, t: int, batch: list[tuple[int, str]], checkpoint: Path | None) -> None:
        """This rank's part of the stage's samples and scores (see raft/sharding.py); parts already written stay."""
        stage, rank, world = self.stage_dir(t), global_rank(), world_size()
        if (stage / "scored.jsonl").exists():
            return
        stage.mkdir(parents=True, exist_ok=True)
        samples = read_part(stage / "samples.jsonl", rank, world)
        if samples is None:
            seed_share(self.seed, t, rank)
            source, source_ckpt = self.sample_source(checkpoint)
            mine = share(batch, rank, world)
            samples = source.sample(source_ckpt, mine, self.sampler, stage)
            write_part(stage / "samples.jsonl", rank, world, samples)
            log.info("rank %d of %d sampled %d of the stage's %d prompts", rank, world, len(mine), len(batch))
        if read_part(stage / "scored.jsonl", rank, world) is None:
            write_part(stage / "scored.jsonl", rank, world, self.score(samples, stage, checkpoint))
        release_memory()

    def merge_stage(self, t: int, batch: list[tuple[int, str]]) -> None:
        """Rank 0: the ranks' parts as the one-process stage files (scored last: its presence ends the stage)."""
        stage, world = self.stage_dir(t), world_size()
        if (stage / "scored.jsonl").exists():
            return
        merge_parts(stage / "samples.jsonl", batch, world)
        merge_parts(stage / "scored.jsonl", batch, world)
        remove_parts(stage, world)

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

    def select(self, scored: list[Sample], stage: Path) -> list[Sample]:
        removed: dict[str, int] = {}
        if getattr(self.selector, "drop_uniform_groups", False):  # Reinforce-Rej: prompts, on all K rewards
            scored, removed["uniform_groups"] = drop_uniform_groups(scored)
        if getattr(self.sampler, "truncated", "train") == "drop":  # rank only what the model finished
            finished = [s for s in scored if not s.truncated]
            removed["truncated"] = len(scored) - len(finished)
            scored = finished
        selected = self.selector(scored)
        kept, filtered = apply_filters(self.filters, selected, stage)
        removed.update(filtered)
        if not kept and (selected or not self.selector_may_keep_nothing):
            # fine-tuning on nothing would save the same policy as a finished stage
            raise ValueError(
                f"{stage.name}: nothing left to fine-tune on ({len(scored) + removed.get('truncated', 0)} samples, "
                f"{len(selected)} selected, removed: {removed or 'none'}); loosen sampler.truncated or filters"
            )
        if not kept:
            log.warning(
                "%s: the selector kept no sample (removed: %s); the policy stays as it was", stage.name, removed
            )
        elif any(removed.values()):
            log.warning(
                "removed before or after selection: %s (%d selected of %d samples)",
                removed,
                len(kept),
                len(scored) + removed.get("truncated", 0),
            )
        atomic_write_text(stage / "filtered.json", json.dumps(removed))
        return kept

    @property
    def selector_may_keep_nothing(self) -> bool:
        """A threshold, or Reinforce-Rej's dropped prompts, can leave no sample in a stage: not an error."""
        return isinstance(self.selector, ThresholdSelection) or getattr(self.selector, "drop_uniform_groups", False)

    def training_set(self, selected: list[Sample]) -> list[Sample]:
        """A teacher's token ids belong to its tokenizer: the student is trained on the text, tokenised its own way."""
        return [s.as_text() for s in selected] if self.teacher is not None else selected

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
            self.stage_dir(t),
            self.seed,
            t,
        )

    # -- bookkeeping ---------------------------------------------------------------------------
    def metrics(self, t, scored, selected, kl, stage) -> dict:
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
        if kl:  # KL(p_theta || p_0) of the policy this stage produced (see raft/kl.py)
            metrics["kl"] = kl_estimate(kl)
        stats = self.checkpoint_dir(t) / TRAINING_STATS
        if stats.exists():  # RAFT++: clip fraction, approx KL of its fit
            metrics.update(json.loads(stats.read_text()))
        filtered = stage / "filtered.json"
        if filtered.exists():
            metrics.update({f"filtered_{k}": v for k, v in json.loads(filtered.read_text()).items()})
        if self.monitor is not None and self.policy.modality == "text" and selected:
            # diversity of the selected set against iteration 0: where reward hacking shows first
            texts = [s.response for s in selected]
            metrics.update(self.monitor.update(t, texts, baseline_dir=self.run_dir / "iter_000"))
        return metrics
