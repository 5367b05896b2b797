"""Held-out evaluation of image policies (task=diffusion_raft, paper Table 8): each evaluation reward's
mean ± std over the images of in-domain prompts (data split "train", the ones RAFT trains on) and
out-of-domain prompts (split "test"). Each split's folder keeps its samples and metrics, so a rerun reuses them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Mapping

from raft.infra import strict_json
from raft.infra.atomic import atomic_write_text
from raft.sampling.samples import read_samples, write_samples

SPLITS = {"in_domain": "train", "out_of_domain": "test"}  # evaluation split -> data split
METRICS_FILE = "eval_metrics.json"


class ImageEvaluator:
    def __init__(self, policy, rewards: Mapping[str, Any], sampler, data):
        if not rewards:
            raise ValueError("the image evaluation needs at least one reward")
        self.policy, self.rewards, self.sampler, self.data = policy, dict(rewards), sampler, data

    def prompts(self, split: str) -> list[str]:
        """Unique prompts of an evaluation split, in order (the training split may repeat them)."""
        return list(dict.fromkeys(self.data.prompts(SPLITS[split])))

    def evaluate(self, checkpoint: Path | None, folder: Path) -> dict:
        """{split: {reward name: {mean, std, n}}}. Same sub-folder names before and after: same noise seeds."""
        result = {}
        for split in SPLITS:
            prompts = self.prompts(split)
            if prompts:
                result[split] = self.evaluate_split(checkpoint, prompts, Path(folder) / split)
        return result

    def evaluate_split(self, checkpoint: Path | None, prompts: list[str], out_dir: Path) -> dict:
        cached = out_dir / METRICS_FILE
        if cached.exists():
            return strict_json.loads_numbers(cached.read_text())
        samples_file = out_dir / "samples.jsonl"
        if samples_file.exists():
            samples = read_samples(samples_file)
        else:
            samples = self.policy.sample(checkpoint, list(enumerate(prompts)), self.sampler, out_dir)
            write_samples(samples_file, samples)
        images = [self.policy.response_for_reward(s, out_dir) for s in samples]
        metrics = {}
        for name, reward in self.rewards.items():
            scores = reward([s.prompt for s in samples], images)
            reward.close()
            metrics[name] = {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "n": len(scores)}
        atomic_write_text(cached, strict_json.dumps(metrics, indent=2))
        return metrics
