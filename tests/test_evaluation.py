"""The evaluator on a scripted text policy: metric keys and values, K=1 sampling, best-of-K, resume."""

import json
import math

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from raft.evaluation import Evaluator
from raft.policies.base import Policy
from raft.rewards.base import Reward
from raft.samples import Sample, read_samples
from raft.sampling import Sampler


class WordCountReward(Reward):
    def score_batch(self, prompts, responses):
        return [len(r.split()) for r in responses]


class ScriptedPolicy(Policy):
    """Response j to prompt i has j + 1 words; records how it was called."""

    def __init__(self):
        self.calls, self.ppl_calls = [], []

    def sample(self, checkpoint, prompts, sampler, out_dir):
        self.calls.append(sampler)
        return [Sample(i, p, " ".join(["word"] * (j + 1) + [f"p{i}"]), sample_idx=j)
                for i, p in prompts for j in range(sampler.K)]

    def finetune(self, *args):
        raise AssertionError("evaluation never trains")

    def perplexity(self, checkpoint, prompts, references):
        self.ppl_calls.append((list(prompts), list(references)))
        return 3.5


def test_metrics_samples_and_cache(tmp_path):
    policy = ScriptedPolicy()
    evaluator = Evaluator(WordCountReward(), Sampler(K=8, temperature=0.7, top_k=40), n_prompts=3, best_of_k=4)
    prompts, refs = ["a", "b", "c", "d"], ["ra", "rb", "rc", "rd"]
    metrics = evaluator.evaluate(policy, None, prompts, refs, tmp_path)
    assert [c.K for c in policy.calls] == [1, 4] and policy.calls[0].temperature == 0.7
    assert policy.ppl_calls == [(["a", "b", "c"], ["ra", "rb", "rc"])]  # capped at n_prompts
    # K=1: responses "word p0", "word p1", "word p2" -> 2 words each; best of 4 -> 5 words.
    assert metrics["reward"] == 2.0 and metrics["best_of_k_reward"] == 5.0 and metrics["ppl"] == 3.5
    assert metrics["n"] == 3 and metrics["length"] == 2.0
    assert metrics["distinct_1"] == pytest.approx(4 / 6) and metrics["unique_1"] == 3
    assert math.isnan(metrics["msttr_100"])
    assert [s.reward for s in read_samples(tmp_path / "eval_samples.jsonl")] == [2.0, 2.0, 2.0]
    assert json.loads((tmp_path / "eval_metrics.json").read_text(), parse_constant=float)["reward"] == 2.0
    # Resume: the cached file is returned without sampling again.
    again = evaluator.evaluate(policy, None, prompts, refs, tmp_path)
    assert len(policy.calls) == 2 and again["reward"] == 2.0


def test_no_references_gives_nan_perplexity(tmp_path):
    policy = ScriptedPolicy()
    metrics = Evaluator(WordCountReward(), Sampler(K=2)).evaluate(policy, None, ["a"], None, tmp_path)
    assert math.isnan(metrics["ppl"]) and not policy.ppl_calls and "best_of_k_reward" not in metrics


def test_default_config_is_the_paper_test_setting():
    cfg = OmegaConf.load("conf/evaluator/default.yaml")
    cfg.reward = {"_target_": "tests.test_evaluation.WordCountReward"}
    evaluator = instantiate(cfg)
    s = evaluator.sampler
    assert (s.K, s.temperature, s.top_k, s.max_new_tokens) == (1, 0.7, 40, 128)
    assert evaluator.due(0) and evaluator.every == 1


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="evaluator.every"):
        Evaluator(WordCountReward(), Sampler(), every=0)
