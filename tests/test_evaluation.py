"""The evaluator on a scripted text policy: metric keys and values, K=1 sampling, best-of-K, resume."""

import importlib
import json
import math
import os

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from raft.evaluation.evaluator import Evaluator
from raft.policies.base import Policy
from raft.rewards.base import Reward
from raft.sampling.sampler import Sampler
from raft.sampling.samples import Sample, read_samples


class WordCountReward(Reward):
    def score_batch(self, prompts, responses):
        return [len(r.split()) for r in responses]


class ScriptedPolicy(Policy):
    """Response j to prompt i has j + 1 words; records how it was called."""

    def __init__(self):
        self.calls, self.ppl_calls = [], []

    def sample(self, checkpoint, prompts, sampler, out_dir):
        self.calls.append(sampler)
        return [
            Sample(i, p, " ".join(["word"] * (j + 1) + [f"p{i}"]), sample_idx=j)
            for i, p in prompts
            for j in range(sampler.K)
        ]

    def training_job(self, *args):
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


def test_start_evaluation_is_shared_by_the_runs_of_a_sweep(tmp_path):
    cache = tmp_path / "cache"
    evaluator = Evaluator(WordCountReward(), Sampler(K=1), best_of_k=2, cache_dir=str(cache))
    first, second, other_model = ScriptedPolicy(), ScriptedPolicy(), ScriptedPolicy()
    other_model.name_or_path = "another-model"
    a = evaluator.evaluate(first, None, ["a", "b"], ["ra", "rb"], tmp_path / "run0" / "eval_before", shared=True)
    b = evaluator.evaluate(second, None, ["a", "b"], ["ra", "rb"], tmp_path / "run1" / "eval_before", shared=True)
    # the second run copied the first one's evaluation
    assert json.dumps(a) == json.dumps(b) and first.calls and not second.calls
    assert (tmp_path / "run1" / "eval_before" / "eval_samples.jsonl").is_file()  # its own folder is complete
    evaluator.evaluate(other_model, None, ["a", "b"], ["ra", "rb"], tmp_path / "run2" / "eval_before", shared=True)
    changed = ScriptedPolicy()
    evaluator.evaluate(changed, None, ["a", "c"], ["ra", "rc"], tmp_path / "run3" / "eval_before", shared=True)
    assert other_model.calls and changed.calls  # another model or other prompts: evaluated anew
    not_shared = ScriptedPolicy()
    evaluator.evaluate(not_shared, None, ["a", "b"], ["ra", "rb"], tmp_path / "run4" / "iter_000")
    assert not_shared.calls and len(list(cache.iterdir())) == 3  # later checkpoints are never shared


def test_no_references_gives_nan_perplexity(tmp_path):
    policy = ScriptedPolicy()
    metrics = Evaluator(WordCountReward(), Sampler(K=2)).evaluate(policy, None, ["a"], None, tmp_path)
    assert math.isnan(metrics["ppl"]) and not policy.ppl_calls and "best_of_k_reward" not in metrics


def test_default_config_is_the_paper_test_setting():
    root = OmegaConf.create(
        {
            "seed": 3,
            "sampler": {"stop": ["\n\nHuman:"]},
            "evaluator": OmegaConf.load("raft/conf/evaluator/default.yaml"),
        }
    )
    root.evaluator.reward = {"_target_": "tests.test_evaluation.WordCountReward"}
    evaluator = instantiate(root.evaluator)
    assert evaluator.seed == 3 and evaluator.sampler.stop == ("\n\nHuman:",)  # the run's seed and stop strings
    s = evaluator.sampler
    assert (s.K, s.temperature, s.top_k, s.max_new_tokens) == (1, 0.7, 40, 128)
    assert evaluator.due(0) and evaluator.every == 1


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="evaluator.every"):
        Evaluator(WordCountReward(), Sampler(), every=0)


def test_training_only_settings_do_not_change_the_evaluation_key():
    """Gradient checkpointing changes how a stage trains, not what the starting model samples: a sweep over it
    shares the starting evaluation; a setting that does change it (the sampling dtype) does not."""
    import types

    from raft.evaluation.cache import evaluation_key
    from raft.policies.causal_lm import CausalLMPolicy

    def key(**settings):
        policy = CausalLMPolicy("tiny-llama", device="cpu", **settings)
        reward = types.SimpleNamespace(scale=1.0)  # the key reads a reward's plain settings only
        return evaluation_key(policy, None, reward, {"n_prompts": 4}, ["a prompt"], None)

    assert key(gradient_checkpointing=True) == key(gradient_checkpointing=False)
    assert key(sample_dtype="float32") != key(sample_dtype="bfloat16")


REWARD_MODULE = """
from raft.rewards.base import Reward


class SignedLength(Reward):
    def __init__(self, words_file=None):
        self.words_file = words_file

    def score_batch(self, prompts, responses):
        return [SIGN * len(r.split()) for r in responses]


SIGN = +1.0
"""


def write_module(path, text, mtime_ns=None):
    """Write a file; with `mtime_ns`, put back that modification time (a copy or checkout that keeps it)."""
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_changed_reward_module_or_file_changes_the_evaluation_key(tmp_path, monkeypatch):
    """The key is what the reward computes, not only its name and settings: a user's reward class whose file
    changed (the sign flipped, same size and time), or a file its settings name rewritten in place, must not
    find the evaluation the old one scored."""
    from raft.evaluation.cache import evaluation_key

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "user_reward_for_key.py"
    words = tmp_path / "words.txt"
    write_module(module, REWARD_MODULE)
    write_module(words, "good\n")
    user_reward = importlib.import_module("user_reward_for_key")

    def key():
        reward = user_reward.SignedLength(words_file=str(words))
        return evaluation_key(ScriptedPolicy(), None, reward, {"n_prompts": 4}, ["a prompt"], None)

    before = key()
    assert key() == before  # stable while nothing changes
    write_module(module, REWARD_MODULE.replace("SIGN = +1.0", "SIGN = -1.0"), module.stat().st_mtime_ns)
    after_code = key()
    assert after_code != before
    write_module(words, "evil\n", words.stat().st_mtime_ns)  # same size, same time, other contents
    assert key() != after_code


def test_an_exact_match_reward_keys_on_its_problem_sets_code(tmp_path, monkeypatch):
    """Exact match scores against the run's data (reward.problems: ${data}); the prompts in the key do not show
    a data class that now extracts other answers from the same questions."""
    from raft.evaluation.cache import evaluation_key
    from raft.rewards.exact_match import ExactMatch

    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "user_problems_for_key.py"
    text = "class Problems:\n    answer = '4'\n\n    def problem(self, prompt):\n        return prompt\n\n"
    text += "    def check(self, problem, answer):\n        return answer == self.answer\n"
    write_module(module, text)
    problems = importlib.import_module("user_problems_for_key").Problems

    def key():
        return evaluation_key(ScriptedPolicy(), None, ExactMatch(problems()), {}, ["2 + 2?"], None)

    before = key()
    write_module(module, text.replace("answer = '4'", "answer = '5'"), module.stat().st_mtime_ns)
    assert key() != before


def test_a_sweep_re_evaluates_after_the_reward_module_changed(tmp_path, monkeypatch):
    """End to end: the first run stores its starting evaluation; the reward's code then flips its sign; the next
    run of the sweep scores anew instead of restoring the old reward's scores."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "user_reward_for_sweep.py"
    write_module(module, REWARD_MODULE)
    user_reward = importlib.import_module("user_reward_for_sweep")
    cache = str(tmp_path / "cache")

    def run(name):
        evaluator = Evaluator(user_reward.SignedLength(), Sampler(K=1), cache_dir=cache)
        return evaluator.evaluate(ScriptedPolicy(), None, ["a", "b"], None, tmp_path / name / "eval_before", True)

    assert run("run0")["reward"] == 2.0
    write_module(module, REWARD_MODULE.replace("SIGN = +1.0", "SIGN = -1.0"), module.stat().st_mtime_ns)
    user_reward = importlib.reload(user_reward)  # the next run imports the changed module
    assert run("run1")["reward"] == -2.0
