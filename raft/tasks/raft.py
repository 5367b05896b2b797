"""`task=raft`: the RAFT iteration (paper section 3.2): sample K per prompt, score, select the best, fine-tune.

The runner (raft/tasks/runner.py) evaluates the start, calls `step` once per iteration and evaluates the end.
Every stage writes its result into `<run>/iter_NNN/` atomically, and a stage whose file exists is
not run again, so the same command restarted after a kill resumes at the first unfinished stage.
Stages only meet through those files and through `Policy` / `Reward`, so each can move to another
engine (vLLM sampling, a distributed trainer) without touching this file.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from raft.evaluation.metrics.rewards import mean, reward_metrics
from raft.infra import progress, strict_json
from raft.infra.atomic import atomic_dir, atomic_write_text, is_complete
from raft.infra.distributed import global_rank, train_along, wait_for, world_size
from raft.infra.errors import StageError
from raft.infra.resources import release_memory, stage_cost
from raft.modules.traits import module_class, traits_of
from raft.policies.base import Policy
from raft.rewards.base import Reward, require_reward
from raft.sampling.samples import Sample, read_samples
from raft.sampling.sharding import merge_parts, read_part, remove_parts, seed_share, share, write_part
from raft.selection.filters import apply_filters
from raft.selection.selectors import KeepAll, Selector, ThresholdSelection, mixed_prompts
from raft.tasks.kl import add_log_probs, kl_estimate, kl_samples
from raft.tasks.runner import Runner, prompt_batch, seed_stage
from raft.trainer.checks import arguments, check_partial
from raft.trainer.stage import TRAINING_STATS

log = logging.getLogger("raft")


class RaftTask(Runner):
    def __init__(
        self,
        policy: Policy,
        reward: Reward,
        sampler: Any,
        selector: Selector,
        module: Callable,
        trainer: Callable,
        filters: Sequence[Callable] = (),
        monitor: Any = None,
        teacher: Policy | None = None,
        track_kl: bool = True,
        dynamic_sampling: bool = False,
        dynamic_sampling_max_batches: int = 4,
        **run: Any,  # the runner's: output_dir, data, evaluator, logger, iterations, batch_size, seed, ...
    ):
        require_reward(reward, "reward")
        check_partial(module, "module")
        check_partial(trainer, "trainer")
        super().__init__(policy=policy, **run)
        self.reward, self.sampler, self.selector, self.module, self.trainer = reward, sampler, selector, module, trainer
        self.filters, self.monitor, self.teacher, self.track_kl = list(filters), monitor, teacher, track_kl
        self.dynamic_sampling, self.dynamic_sampling_max_batches = dynamic_sampling, dynamic_sampling_max_batches
        self.check_method()

    def check_method(self) -> None:
        """Parts that cannot work together stop here, before any model loads."""
        builds, traits = module_class(self.module), traits_of(self.module)
        name = getattr(builds, "__name__", builds)
        if traits.for_task is not None:
            owner = traits.for_task
            raise ValueError(
                f"module {name} belongs to task={owner}: run it with task={owner}, "
                "or pick a module of this task (module=sft, raftpp, reinforce_rej, grpo)"
            )
        cap, new = getattr(self.policy, "max_length", None), getattr(self.sampler, "max_new_tokens", None)
        if cap is not None and new is not None and new >= cap:
            raise ValueError(
                f"sampler.max_new_tokens={new} leaves no room for the prompt within model.max_length={cap} "
                "(training keeps each row's last max_length tokens): raise model.max_length or lower max_new_tokens"
            )
        if traits.trains_on_every_sample and not isinstance(self.selector, KeepAll):
            raise ValueError(
                f"module {name} weighs every sample by its advantage (negatives too), "
                f"but selector {type(self.selector).__name__} keeps only some: use selector=all "
                "(task=grpo and task=reinforce_rej pick it)"
            )
        if traits.takes_reference and getattr(self.sampler, "generation_kwargs", None):
            log.warning(
                "sampler.generation_kwargs %s reshape the sampling distribution: %s's importance ratio is taken "
                "against the plain policy at temperature %s, not against what sampled",
                dict(self.sampler.generation_kwargs),
                name,
                self.sampler.temperature,
            )
        compares = self.selector.mixed_prompts_only or self.dynamic_sampling or traits.group_relative
        if compares and self.sampler.K < 2:
            raise ValueError(f"sampler.K must be >= 2 to compare a prompt's responses, got {self.sampler.K}")
        if self.dynamic_sampling_max_batches < 1:
            raise ValueError(f"task.dynamic_sampling_max_batches must be >= 1, got {self.dynamic_sampling_max_batches}")

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
        # 2b. DAPO's dynamic sampling: more prompts until b of them have responses of differing rewards
        pool = scored
        if self.dynamic_sampling:
            with stage_cost(costs, "dynamic_sampling"), progress.stage("dynamic sampling"):
                pool = self.stage(stage / "dynamic.jsonl", lambda: self.fill_mixed(t, batch, scored, checkpoint))
        # 3. select the best (local / global / KL-penalised / threshold), then drop reward-hacking samples
        selected = self.stage(stage / "selected.jsonl", lambda: self.select(pool, stage))
        # 4. fine-tune the current policy on the selected set (again if its folder fails its manifest check)
        if not is_complete(self.checkpoint_dir(t)):
            seed_stage(self.seed, t)  # a resumed run shuffles and drops out as the uninterrupted one did
            with stage_cost(costs, "training"), atomic_dir(self.checkpoint_dir(t)) as tmp:
                if selected:
                    trainer = self.tracked(self.trainer, t)
                    module = self.module_for(t, tmp)
                    self.policy.finetune(checkpoint, self.training_set(selected), tmp, module, trainer)
                else:  # the selector kept nothing (no sample reached the threshold): the policy stays as it was
                    self.policy.save_unchanged(checkpoint, tmp)
            release_memory()
        # 5. how far the policy this stage produced has moved from the initial one
        with stage_cost(costs, "kl"), progress.stage("KL samples"):
            kl = self.stage(stage / "kl_samples.jsonl", lambda: self.kl_samples(t, batch)) if self.tracks_kl else []
        metrics = self.metrics(t, scored, pool, selected, kl, stage)
        metrics.update(costs)
        return metrics, selected

    def module_for(self, t: int, out_dir: Path) -> Callable:
        """Stage t's module partial, with what the task knows bound in: the initial policy (a clipped-ratio
        module's KL reference, loaded only if it asks) and where its optimiser state comes from and goes."""
        module = self.module
        if not isinstance(module, functools.partial):
            return module
        if traits_of(module).takes_reference:
            module = functools.partial(module, reference=self.load_reference)
        if arguments(module, "module").get("optimizer_state") == "run":
            previous = self.checkpoint_dir(t - 1) if t > 0 else None
            module = functools.partial(module, optimizer_state_from=previous, optimizer_state_to=out_dir)
        return module

    def load_reference(self):
        """The initial policy (the model, or init_checkpoint) in float32: the KL reference of a clipped-ratio fit."""
        model, _ = self.policy.load(self.init_checkpoint, "float32")
        return model

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
                    self.checkpoint(t - 1),
                    self.training_set(selected),
                    scratch,
                    self.module_for(t, scratch),
                    self.trainer,
                ),
            )
            release_memory()

    # -- stages --------------------------------------------------------------------------------
    def sample_source(self, checkpoint: Path | None) -> tuple[Policy, Path | None]:
        return (self.teacher, None) if self.teacher else (self.policy, checkpoint)

    def share_stage(self, t: int, batch: list[tuple[int, str]], checkpoint: Path | None) -> None:
        """This rank's part of the stage's samples and scores (sampling/sharding.py); parts written stay."""
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

    def score(self, samples: list[Sample], stage: Path, checkpoint: Path | None) -> list[Sample]:
        responses = [self.policy.response_for_reward(s, stage) for s in samples]
        rewards = self.reward([s.prompt for s in samples], responses)
        self.reward.close()  # never hold the reward model while the policy trains
        for s, r in zip(samples, rewards):
            s.reward = r
        if self.selector.needs_log_probs:  # KL-penalised ranking (eq. 5): every sample, under the student
            as_trained = self.training_set(samples)  # a teacher's text in the student's own format and tokens
            add_log_probs(self.policy, as_trained, checkpoint, self.init_checkpoint)
            for s, own in zip(samples, as_trained):
                s.logp, s.ref_logp = own.logp, own.ref_logp
        return samples

    def fill_mixed(self, t: int, batch: list[tuple[int, str]], scored: list[Sample], checkpoint) -> list[Sample]:
        """DAPO's dynamic sampling (Yu et al. 2025): the stage's prompts whose K rewards differ, topped up with
        batches of unused prompts until there are b of them or `dynamic_sampling_max_batches` more were drawn.
        Each extra batch is a stage file of its own, so a killed run resumes it; the counts go to dynamic.json."""
        stage, pool = self.stage_dir(t), mixed_prompts(scored)[0]
        used = {i for i, _ in batch}
        train = self.data.prompts("train")
        extra = 0
        while len({s.prompt_idx for s in pool}) < len(batch) and extra < self.dynamic_sampling_max_batches:
            extra += 1
            unused = [i for i in range(len(train)) if i not in used]
            if not unused:
                break
            random.Random(f"{self.seed}-{t}-{extra}").shuffle(unused)
            more = [(i, train[i]) for i in unused[: len(batch)]]
            used.update(i for i, _ in more)
            source, source_ckpt = self.sample_source(checkpoint)

            def draw(more=more, source=source, source_ckpt=source_ckpt, extra=extra):
                seed_stage(self.seed * 1_000 + extra, t)
                return self.score(source.sample(source_ckpt, more, self.sampler, stage), stage, checkpoint)

            pool += mixed_prompts(self.stage(stage / f"dynamic_{extra:02d}.jsonl", draw))[0]
        keep = list(dict.fromkeys(s.prompt_idx for s in pool))[: len(batch)]
        pool = [s for s in pool if s.prompt_idx in set(keep)]
        counts = {"batches": extra, "extra_samples": extra * len(batch) * self.sampler.K, "mixed_prompts": len(keep)}
        atomic_write_text(stage / "dynamic.json", json.dumps(counts))
        if len(keep) < len(batch):
            log.warning(
                "%s: dynamic sampling found %d of %d prompts with differing rewards after %d more batches "
                "(task.dynamic_sampling_max_batches)",
                stage.name,
                len(keep),
                len(batch),
                extra,
            )
        return pool

    def rank(self, scored: list[Sample]) -> tuple[list[Sample], dict[str, int]]:
        """The selector's choice before the post-filters, and what was removed before it chose."""
        removed: dict[str, int] = {}
        if self.selector.mixed_prompts_only:  # Reinforce-Rej's filter: prompts, on all K rewards
            scored, removed["uniform_groups"] = mixed_prompts(scored)
        if getattr(self.sampler, "truncated", "train") == "drop":  # rank only what the model finished (text)
            finished = [s for s in scored if not s.truncated]
            removed["truncated"] = len(scored) - len(finished)
            scored = finished
        return self.selector(scored), removed

    def select(self, scored: list[Sample], stage: Path) -> list[Sample]:
        selected, removed = self.rank(scored)
        kept, filtered = apply_filters(self.filters, selected, stage)
        removed.update(filtered)
        if not kept and (selected or not self.selector_may_keep_nothing):
            # fine-tuning on nothing would save the same policy as a finished stage
            raise StageError(
                f"{stage.name}: nothing left to fine-tune on ({len(scored)} samples, "
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
                len(scored),
            )
        atomic_write_text(stage / "filtered.json", json.dumps(removed))
        return kept

    @property
    def selector_may_keep_nothing(self) -> bool:
        """A threshold, or Reinforce-Rej's dropped prompts, can leave no sample in a stage: not an error."""
        return (
            isinstance(self.selector, ThresholdSelection) or self.selector.mixed_prompts_only or self.dynamic_sampling
        )

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
    def metrics(self, t, scored, pool, selected, kl, stage) -> dict:
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
        if kl:  # KL(p_theta || p_0) of the policy this stage produced (see raft/tasks/kl.py)
            metrics["kl"] = kl_estimate(kl)
        stats = self.checkpoint_dir(t) / TRAINING_STATS
        if stats.exists():  # RAFT++: clip fraction, approx KL of its fit
            metrics.update(strict_json.loads_numbers(stats.read_text()))
        filtered = stage / "filtered.json"
        if filtered.exists():
            metrics.update({f"filtered_{k}": v for k, v in json.loads(filtered.read_text()).items()})
        dynamic = stage / "dynamic.json"
        if dynamic.exists():
            metrics.update({f"dynamic_{k}": v for k, v in json.loads(dynamic.read_text()).items()})
        ranked = self.rank(pool)[0] if self.monitor is not None and self.policy.modality == "text" else []
        if ranked:
            # diversity of what the reward chose (before post-filters clean or drop it) against iteration 0:
            # where reward hacking shows first, also when a filter keeps it out of training
            texts = [s.response for s in ranked]
            metrics.update(self.monitor.update(t, texts, baseline_dir=self.run_dir / "iter_000"))
        return metrics
