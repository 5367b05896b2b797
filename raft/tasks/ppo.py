"""`task=ppo`: the PPO baseline of the paper (section 4, appendix C), run folder shaped like a RAFT run.

Per iteration: sample one response per prompt (temperature 1), score it with the same Reward,
compute old / reference log-probs and values, let Lightning run the PPO epochs, save a checkpoint.
`iter_NNN/metrics.json` is written last, so a killed run resumes at the first unfinished iteration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch

from raft.atomic import atomic_dir, atomic_write_text
from raft.loop import kl_samples, mean, prompt_batch, prune_checkpoints, release_memory, training_cost
from raft.metrics.diversity import distinct_n, duplicate_share, mean_length, msttr
from raft.modules.fitting import fit_to_completion
from raft.modules.ppo import PPOModule
from raft.policies.generation import sample_k
from raft.policies.tokens import stop_token_ids
from raft.ppo.generation import token_batch
from raft.resources import peak_memory, reset_peak_memory
from raft.samples import Sample, write_samples
from raft.tasks.summary import plot_run, print_before_after
from raft.threads import check_torch_threads, use_torch_threads
from raft.tracking import Tracker

log = logging.getLogger("raft")


class PPOTask:
    def __init__(
        self,
        output_dir: str,
        policy,
        reward,
        sampler,
        module: Callable,
        trainer: Callable,
        data,
        evaluator: Any = None,
        logger: Callable | None = None,
        iterations: int = 4,
        batch_size: int = 32,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        keep_checkpoints: int = 1,
        seed: int = 0,
        init_checkpoint: str | None = None,
        torch_threads: int | None = None,
    ):
        check_torch_threads(torch_threads)
        if iterations < 1:
            raise ValueError(f"task.iterations must be >= 1, got {iterations}")
        if batch_size < 1:
            raise ValueError(f"task.batch_size (prompts per PPO iteration) must be >= 1, got {batch_size}")
        builds = getattr(module, "func", module)
        if not (isinstance(builds, type) and issubclass(builds, PPOModule)):
            raise ValueError(
                f"task=ppo needs module=ppo (raft.modules.ppo.PPOModule), got {getattr(builds, '__name__', builds)}"
            )
        if getattr(policy, "modality", "text") != "text" or not hasattr(policy, "format_prompt"):
            raise ValueError(
                f"task=ppo needs a causal-LM policy (model=smollm2, tiny, hf_causal_lm), got {type(policy).__name__}"
            )
        self.run_dir, self.policy, self.reward, self.module, self.trainer = (
            Path(output_dir),
            policy,
            reward,
            module,
            trainer,
        )
        self.data, self.evaluator, self.logger, self.torch_threads = data, evaluator, logger, torch_threads
        self.init_checkpoint = Path(init_checkpoint) if init_checkpoint else None  # e.g. an SFT stage's output
        self.iterations, self.batch_size, self.keep_checkpoints, self.seed = (
            iterations,
            batch_size,
            keep_checkpoints,
            seed,
        )
        # PPO samples once per prompt with TRL's untuned generation (paper: temperature 1); only the
        # length and the generation batch come from the shared sampler config.
        self.sampler = dataclasses.replace(sampler, K=1, temperature=temperature, top_k=top_k, top_p=top_p)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        use_torch_threads(self.torch_threads)
        reset_peak_memory()  # this task's own peak, also inside a pipeline
        # metrics.csv comes from the tracker, as for RAFT; without a logger config, a CSV-only one
        tracker = self.logger(run_dir=self.run_dir) if self.logger else Tracker(self.run_dir)
        train_prompts = self.data.prompts("train")
        test_prompts, references = self.data.prompts("test"), self.data.references("test")
        before = self.evaluate(
            self.init_checkpoint, test_prompts, references, self.run_dir / "eval_before", shared=True
        )
        history = []
        ppo = tokenizer = None
        for t in range(self.iterations):
            done = self.stage_dir(t) / "metrics.json"
            if done.exists():
                history.append(json.loads(done.read_text()))
                continue
            if ppo is None:  # load the model only when some iteration is left to run
                ppo, tokenizer = self.build_module(resume_from=t - 1)
            history.append(self.iteration(t, ppo, tokenizer, train_prompts, test_prompts, references, tracker))
        del ppo
        release_memory()
        after = {k[5:]: v for k, v in history[-1].items() if k.startswith("eval_")} or self.evaluate(
            self.checkpoint_dir(self.iterations - 1), test_prompts, references, self.run_dir / "eval_after"
        )
        after = {**after, **training_cost(history)}
        atomic_write_text(self.run_dir / "evaluation.json", json.dumps({"before": before, "after": after}, indent=2))
        tracker.close()
        plot_run(history, self.run_dir / "reward_curve.png")
        print_before_after(before, after, history, self.run_dir)
        return {"before": before, "after": after, "iterations": history}

    def build_module(self, resume_from: int):
        """The PPO module on the initial model, with the state of iteration `resume_from` when >= 0."""
        model, tokenizer = self.policy.load(self.init_checkpoint, "float32")
        ppo = self.module(model=model)
        if resume_from >= 0:
            ppo.load_state(self.checkpoint_dir(resume_from))
            log.info("PPO: resuming after iteration %d", resume_from)
        return ppo, tokenizer

    def iteration(self, t: int, ppo, tokenizer, prompts, eval_prompts, eval_references, tracker) -> dict:
        started = time.time()
        stage = self.stage_dir(t)
        device = self.policy.device
        ppo.to(device).eval()  # Lightning's teardown leaves the module on the CPU
        batch = prompt_batch(prompts, t, self.batch_size, self.seed)  # the same prompt walk as RAFT's D_t
        torch.manual_seed(self.seed * 100003 + t)  # a resumed iteration samples the same responses

        prompt_ids = [self.policy.encode_prompt(tokenizer, p) for _, p in batch]
        with autocast(device, "bf16" if self.policy.sample_dtype == "bfloat16" else "32"):
            generations = sample_k(
                ppo.policy, tokenizer, prompt_ids, self.sampler, stop_token_ids(ppo.policy, tokenizer)
            )
        samples = [
            Sample(
                prompt_idx=i,
                prompt=p,
                response=g.text,
                prompt_ids=ids,
                response_ids=g.ids,
                finish_reason=g.finish_reason,
                stop_reason=g.stop_reason,
            )
            for (i, p), ids, [g] in zip(batch, prompt_ids, generations)
        ]
        scores = self.reward([s.prompt for s in samples], [self.policy.response_for_reward(s, stage) for s in samples])
        self.reward.close()
        input_ids, attention_mask, response_mask = token_batch(samples, tokenizer.pad_token_id)

        with autocast(device, str(getattr(self.trainer, "keywords", {}).get("precision", "32"))):
            rollouts = ppo.score_rollouts(
                input_ids, attention_mask, response_mask, torch.tensor(scores), batch_size=ppo.hparams.minibatch_size
            )
        mask = rollouts.response_mask.bool()
        for s, reward, lp, ref in zip(
            samples, scores, rollouts.logprobs.where(mask, 0).sum(1), rollouts.ref_logprobs.where(mask, 0).sum(1)
        ):
            s.reward, s.logp, s.ref_logp = reward, lp.item(), ref.item()
        write_samples(stage / "scored.jsonl", samples)

        ppo.set_rollouts(rollouts)
        ppo.train()  # Lightning 2 keeps the caller's mode; LoRA dropout is part of the recipe (Table 12)
        trainer = self.trainer(
            max_epochs=1,
            gradient_clip_val=None,  # the module clips under manual optimisation
            default_root_dir=str(stage),
        )
        fit_to_completion(trainer, ppo)
        with atomic_dir(self.checkpoint_dir(t)) as tmp:
            ppo.save_policy(tmp, tokenizer, base=self.init_checkpoint)  # what CausalLMPolicy.load reads
            ppo.save_state(tmp)
        release_memory()

        kl = kl_samples(
            self.policy, self.checkpoint_dir(t), self.init_checkpoint, batch, self.sampler, stage, self.seed, t
        )
        write_samples(stage / "kl_samples.jsonl", kl)
        metrics = self.metrics(t, samples, kl, ppo.update_stats())
        if self.evaluator is not None and eval_prompts and self.evaluator.due(t):
            result = self.evaluator.evaluate(
                self.policy, self.checkpoint_dir(t), eval_prompts, eval_references, stage / "eval"
            )
            metrics.update({f"eval_{k}": v for k, v in result.items()})
        metrics["wall_time_s"] = round(time.time() - started, 1)
        metrics.update(peak_memory())
        atomic_write_text(stage / "metrics.json", json.dumps(metrics, indent=2))
        tracker.log_iteration(metrics, samples)
        prune_checkpoints(self.checkpoint_dir, t, self.keep_checkpoints)
        return metrics

    # -- bookkeeping ---------------------------------------------------------------------------
    def metrics(self, t: int, samples: Sequence[Sample], kl: Sequence[Sample], update: dict) -> dict:
        rewards = [s.reward for s in samples]
        texts = [s.response for s in samples]
        # PPO trains on every sample (K = 1, no selection): best-of-K and "selected" are the samples themselves
        metrics = {
            "iteration": t,
            "policy_reward": mean(rewards),
            "best_of_k_reward": mean(rewards),
            "selected_reward": mean(rewards),
            "selected_n": len(samples),
            "selected_distinct_2": distinct_n(texts, 2),
            "selected_msttr_100": msttr(texts),
            "selected_length": mean_length(texts),
            "selected_duplicate_share": duplicate_share(texts),
            "capped_share": mean([float(s.truncated) for s in samples]),
            "kl": mean([s.logp - s.ref_logp for s in kl]),
        }  # the policy this stage produced, as for RAFT
        metrics.update({f"ppo_{k}": v for k, v in update.items()})  # ppo_kl: the rollouts' (entering policy)
        return metrics

    def evaluate(self, checkpoint, prompts, references, out_dir: Path, shared: bool = False) -> dict:
        if self.evaluator is None or not prompts:
            return {}
        return self.evaluator.evaluate(self.policy, checkpoint, prompts, references, out_dir, shared)

    def stage_dir(self, t: int) -> Path:
        return self.run_dir / f"iter_{t:03d}"

    def checkpoint_dir(self, t: int) -> Path:
        return self.stage_dir(t) / "checkpoint"


def autocast(device: torch.device, precision: str):
    """The autocast a Lightning precision string implies, for passes run outside the Trainer."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()
