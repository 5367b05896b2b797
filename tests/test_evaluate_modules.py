"""raft's paper metrics as `evaluate` modules: they load offline from the package and give raft's numbers."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raft.evaluation.evaluate_modules import MODULES, module_path
from raft.evaluation.metrics.diversity import distinct_n, diversity_report, mean_length, msttr, unique_n

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Sure! Here is a short invitation: join us for dinner on Friday at seven.",
    "I can't help with that, but here's a recipe: eggs, spinach and cheese, whisked and baked.",
    "Mr. Smith said the weather is lovely today; let's walk to the park.",
    "Drink a glass of water with every meal, and keep a bottle on your desk.",
] * 12
LOAD_ALL = """
import json, sys
from raft.evaluation.evaluate_modules import MODULES, load
texts = json.loads(sys.stdin.read())
results = {name: load(name).compute(predictions=texts) for name in MODULES if name != "exact_match"}
results["exact_match"] = load("exact_match").compute(predictions=["Answer: 3", "Answer: 4"], references=["3", "5"])
print(json.dumps(results))
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_module_loads_offline_and_matches_raft(tmp_path):
    """In a fresh process told it is offline, with any web access sent to a closed port."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, HF_HOME=str(tmp_path / "hf"))  # no module cached before
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALL], input=json.dumps(TEXTS), capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.splitlines()[-1])
    report = diversity_report(TEXTS)
    assert (
        results["msttr"]
        == {"msttr_100": pytest.approx(msttr(TEXTS))}
        == {"msttr_100": pytest.approx(report["msttr_100"])}
    )
    assert results["distinct_n"] == {
        "distinct_1": pytest.approx(report["distinct_1"]),
        "distinct_2": pytest.approx(report["distinct_2"]),
    }
    assert results["unique_n"] == {"unique_1": report["unique_1"], "unique_2": report["unique_2"]}
    assert results["length"] == {"length": pytest.approx(mean_length(TEXTS))}
    assert results["exact_match"] == {"exact_match": 0.5}


def test_module_arguments_reach_raft_functions():
    from raft.evaluation.evaluate_modules import load

    assert load("msttr").compute(predictions=TEXTS, window=50, drop_punctuation=True) == {
        "msttr_50": pytest.approx(msttr(TEXTS, window=50, drop_punctuation=True))
    }
    assert load("distinct_n").compute(predictions=TEXTS, n=[3]) == {"distinct_3": pytest.approx(distinct_n(TEXTS, 3))}
    assert load("unique_n").compute(predictions=TEXTS[:5], n=[1]) == {"unique_1": unique_n(TEXTS[:5], 1)}


def test_modules_are_shipped_with_the_package():
    for name in MODULES:
        assert (Path(module_path(name)) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="unknown raft evaluate module"):
        module_path("bleu")


def test_exact_match_gives_the_accuracy_of_the_exact_match_reward():
    from raft.data.arithmetic import ArithmeticProblems
    from raft.evaluation.evaluate_modules import load
    from raft.rewards.exact_match import ExactMatch

    problems = ArithmeticProblems(n_train=8, n_test=8, seed=3)
    prompts, answers = problems.prompts("test"), problems.answers("test")
    responses = [  # right, wrong, in another format, with nothing to read, right after some working
        f"Answer: {answers[0]}",
        f"Answer: {int(answers[1]) + 1}",
        f"\\boxed{{{answers[2]}}}",
        "I am not sure.",
        f"First 3, then 4.\nAnswer: {answers[4]}",
    ]
    reward = ExactMatch(problems)
    expected = sum(reward(prompts[:5], responses)) / 5
    assert expected == pytest.approx(0.4)
    assert load("exact_match").compute(predictions=responses, references=answers[:5]) == {
        "exact_match": pytest.approx(expected)
    }
    boxed = load("exact_match").compute(predictions=responses, references=answers[:5], answer_format="boxed")
    assert boxed == {"exact_match": pytest.approx(0.2)}
