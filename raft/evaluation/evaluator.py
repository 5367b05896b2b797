"""Held-out evaluation in the paper's test setting: reward, reference perplexity and diversity.

One response per prompt (temperature 0.7, top-k 40, 128 new tokens in `raft/conf/evaluator/default.yaml`),
scored by the reward; the policy's perplexity on reference responses; GEM diversity metrics on the
responses. Results are cached in the output folder, so a resumed run does not evaluate twice.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from raft.evaluation.cache import describe, evaluation_key, restore, store
from raft.evaluation.metrics.diversity import diversity_report
from raft.infra import strict_json
from raft.infra.atomic import atomic_write_text
from raft.infra.locks import file_lock
from raft.rewards.base import require_reward
from raft.sampling.samples import Sample, read_samples, write_samples

TEXT_KEYS = ("msttr_100", "distinct_1", "distinct_2", "unique_1", "unique_2", "length")


class Evaluator:
    def __init__(
        self,
        reward: Any,
        sampler: Any,
        n_prompts: int | None = None,
        best_of_k: int = 0,
        every: int = 1,
        seed: int = 0,
        cache_dir: str | None = None,
    ):
        require_reward(reward, "evaluator.reward")
        if n_prompts is not None and n_prompts < 1:
            raise ValueError(f"evaluator.n_prompts must be >= 1 or null (all), got {n_prompts}")
        if best_of_k < 0:
            raise ValueError(f"evaluator.best_of_k must be >= 0 (0 = off), got {best_of_k}")
        if every < 1:
            raise ValueError(f"evaluator.every must be >= 1 (evaluate every N iterations), got {every}")
        self.reward, self.sampler, self.n_prompts = reward, sampler, n_prompts
        self.best_of_k, self.every, self.seed = best_of_k, every, seed
        self.cache_dir = Path(cache_dir) if cache_dir else None  # starting-model evaluations shared by a sweep

    def due(self, iteration: int) -> bool:
        """Whether the loop evaluates after iteration `iteration` (0-based)."""
        return (iteration + 1) % self.every == 0

    def evaluate(
        self,
        policy,
        checkpoint: Path | None,
        prompts: Sequence[str],
        references: Sequence[str] | None,
        out_dir: str | Path,
        shared: bool = False,
    ) -> dict:
        """`shared`: the starting checkpoint, whose evaluation other runs may already have stored (cache_dir)."""
        out_dir = Path(out_dir)
        cached = out_dir / "eval_metrics.json"  # written last: this folder's evaluation is finished
        prompts = list(prompts)[: self.n_prompts]
        references = list(references)[: len(prompts)] if references is not None else None
        if not (shared and self.cache_dir is not None):
            if cached.exists():
                return strict_json.loads_numbers(cached.read_text())
            return self._evaluate(policy, checkpoint, prompts, references, out_dir)
        settings = {"sampler": describe(self.sampler), "best_of_k": self.best_of_k, "seed": self.seed}
        key = evaluation_key(policy, checkpoint, self.reward, settings, prompts, references)
        locks = self.cache_dir.with_name(self.cache_dir.name + ".locks")  # beside the cache: entries stay alone
        with file_lock(locks / key):  # parallel sweep jobs: one evaluates, the others copy its result
            if not cached.exists() and not restore(self.cache_dir, key, out_dir):
                self._evaluate(policy, checkpoint, prompts, references, out_dir)
            store(self.cache_dir, key, out_dir)  # also when an earlier life was killed before storing it
        return strict_json.loads_numbers(cached.read_text())

    def _evaluate(self, policy, checkpoint, prompts: list[str], references: list[str] | None, out_dir: Path) -> dict:
        samples = self._scored(policy, checkpoint, prompts, 1, out_dir, "eval_samples.jsonl")
        metrics: dict[str, float] = {"reward": _mean([s.reward for s in samples])}
        metrics["ppl"] = float(policy.perplexity(checkpoint, prompts, references)) if references else math.nan
        if policy.modality == "text":
            metrics.update(diversity_report([s.response for s in samples]))
        else:  # image responses: text diversity does not apply
            metrics.update({key: math.nan for key in TEXT_KEYS}, n=len(samples))
        if self.best_of_k > 0:
            many = self._scored(policy, checkpoint, prompts, self.best_of_k, out_dir, "eval_best_of_k_samples.jsonl")
            best: dict[int, float] = {}
            for s in many:
                best[s.prompt_idx] = max(best.get(s.prompt_idx, -math.inf), s.reward)
            metrics["best_of_k_reward"] = _mean(list(best.values()))
        if self.reward.binary:  # 0/1 rewards (exact match): accuracy and pass@K
            metrics["accuracy"] = metrics["reward"]  # pass@1: one sample per held-out problem
            if self.best_of_k > 0:
                metrics["pass_at_k"] = metrics["best_of_k_reward"]  # share solved by any of the K samples
        atomic_write_text(out_dir / "eval_metrics.json", strict_json.dumps(metrics, indent=2))
        return metrics

    def evaluate_responses(self, prompts: Sequence[str], responses: Sequence[str], out_dir: str | Path) -> dict:
        """The same columns for fixed responses (a dataset's chosen or rejected ones: the paper's Table 3 rows).

        No perplexity: there is no policy. The first `n_prompts` pairs are used, as for a model.
        """
        out_dir = Path(out_dir)
        cached = out_dir / "eval_metrics.json"
        if cached.exists():
            return strict_json.loads_numbers(cached.read_text())
        prompts, responses = list(prompts)[: self.n_prompts], list(responses)[: self.n_prompts]
        samples = [
            Sample(prompt_idx=i, prompt=p, response=r, sample_idx=0) for i, (p, r) in enumerate(zip(prompts, responses))
        ]
        for s, r in zip(samples, self.scores(prompts, responses)):
            s.reward = r
        out_dir.mkdir(parents=True, exist_ok=True)
        write_samples(out_dir / "eval_samples.jsonl", samples)
        metrics = {"reward": _mean([s.reward for s in samples]), "ppl": math.nan, **diversity_report(responses)}
        atomic_write_text(cached, strict_json.dumps(metrics, indent=2))
        return metrics

    def _scored(self, policy, checkpoint, prompts, k: int, out_dir: Path, name: str) -> list[Sample]:
        """Sample k responses per prompt and score them; reuse the file when an earlier attempt wrote it."""
        path = out_dir / name
        if path.exists():
            return read_samples(path)
        out_dir.mkdir(parents=True, exist_ok=True)
        sampler = dataclasses.replace(self.sampler, K=k)
        torch.manual_seed(self.seed)  # the same random stream for every checkpoint: a paired before/after
        samples = policy.sample(checkpoint, list(enumerate(prompts)), sampler, out_dir)
        responses = [policy.response_for_reward(s, out_dir) for s in samples]
        for s, r in zip(samples, self.scores([s.prompt for s in samples], responses)):
            s.reward = r
        write_samples(path, samples)
        return samples

    def scores(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        scores = self.reward(prompts, responses)
        self.reward.close()  # free the reward model before the policy loads again
        return scores


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan
