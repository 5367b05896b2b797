"""Verifiable tasks: generated problems, answer extraction, the exact-match reward, hub loaders, accuracy metrics."""

from __future__ import annotations

import json
import random

import pytest
from hydra.utils import instantiate
from test_config import compose_with

from raft.data.answers import extract_answer, last_boxed, same_answer
from raft.data.arithmetic import ArithmeticProblems, arithmetic_problem
from raft.data.countdown import CountdownProblems, evaluate
from raft.data.math_hub import HubProblems, gsm8k_answer, reference_answer
from raft.evaluation.evaluator import Evaluator
from raft.policies.base import Policy
from raft.rewards.exact_match import ExactMatch
from raft.sampling.sampler import Sampler
from raft.sampling.samples import Sample


def solve(question: str) -> int:
    """Replays an arithmetic word problem sentence by sentence: an independent check of the generator."""
    count = 0
    for sentence in question.split(". "):
        numbers = [int(w.strip(".?")) for w in sentence.split() if w.strip(".?").isdigit()]
        if " has " in sentence and "How many" not in sentence:
            count = numbers[0]
        elif "more" in sentence or "gives" in sentence and "away" not in sentence:
            count += numbers[0]
        elif "away" in sentence or "loses" in sentence:
            count -= numbers[0]
        elif "packs" in sentence:
            count += numbers[0] * numbers[1]
        elif "shares" in sentence:
            count //= numbers[0]
    return count


def test_arithmetic_problems_have_their_stated_integer_answers():
    rng = random.Random(1)
    for steps in (1, 2, 4):
        for _ in range(200):
            problem = arithmetic_problem(rng, steps, 20, ("add", "subtract", "multiply", "divide"))
            assert problem.question.count(". ") == steps + 1  # start, steps, question
            assert int(problem.answer) == solve(problem.question) >= 0


def test_arithmetic_splits_are_seeded_disjoint_and_capped():
    data = ArithmeticProblems(n_train=50, n_test=10, steps=2, seed=3, limit=20)
    again = ArithmeticProblems(n_train=50, n_test=10, steps=2, seed=3, limit=20)
    assert data.prompts("train") == again.prompts("train") and len(data.prompts("train")) == 20
    assert len(data.prompts("test")) == 10 and not set(data.prompts("test")) & set(data.prompts("train"))
    assert data.prompts("test") != ArithmeticProblems(n_train=50, n_test=10, steps=2, seed=4).prompts("test")
    assert data.prompts("test")[0].endswith('"Answer: <answer>".') and data.references("test") is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "data.steps must be >= 1"),
        ({"operations": ["add", "power"]}, "data.operations must be a non-empty subset"),
        ({"answer_format": "xml"}, "data.answer_format must be one of"),
        ({"template": "no question here"}, "data.template must contain {question}"),
    ],
)
def test_arithmetic_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArithmeticProblems(**kwargs)


@pytest.mark.parametrize(
    "response, answer_format, expected",
    [
        ("3 + 4 = 7.\nAnswer: 7", "answer_line", "7"),
        ("**Answer:** 1,250.", "answer_line", "1,250"),
        ("answer: 2\nwait, Answer: 3", "answer_line", "3"),  # the last one counts
        ("The total is 7.", "answer_line", None),  # no answer line: no answer
        ("Answer:   \n", "answer_line", None),
        ("48 + 24 = 72\n#### 72", "hashes", "72"),
        ("The answer is 72.", "hashes", None),
        ("so $\\boxed{\\frac{1}{2}}$", "boxed", "\\frac{1}{2}"),
        ("\\boxed{x^{2}+1} and \\boxed{5}", "boxed", "5"),
        ("\\boxed{12", "boxed", None),  # cut off mid-answer
        ("3 then 4 then -12.5", "last_number", "-12.5"),
        ("nothing", "last_number", None),
    ],
)
def test_answer_extraction(response, answer_format, expected):
    assert extract_answer(response, answer_format) == expected


@pytest.mark.parametrize(
    "given, reference, equal",
    [
        ("1,250", "1250", True),
        ("7.0", "7", True),
        ("\\frac{1}{2}", "1/2", True),
        ("\\dfrac{3}{4}", "\\frac{3}{4}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("10^\\circ", "10", True),
        ("8", "9", False),
        ("x+1", "x-1", False),
    ],
)
def test_same_answer(given, reference, equal):
    assert same_answer(given, reference) is equal


def test_gsm8k_and_math_reference_extraction_on_literal_rows():
    solution = (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    )
    assert gsm8k_answer(solution) == "72"
    assert gsm8k_answer("He pays 2*500 = <<2*500=1000>>1000.\n#### 1,000") == "1000"
    assert gsm8k_answer("no final answer") is None
    math = "We have $r = \\sqrt{0^2 + 3^2} = 3.$ So the point is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$"
    assert reference_answer(math, "boxed") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("The answer is $\\boxed{\\text{(C)}}$") == "\\text{(C)}"
    assert reference_answer("  \\frac{14}{3} ", "field") == "\\frac{14}{3}"


def test_hub_problems_read_a_local_file_the_hub_way(tmp_path):
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(6)]
    rows.append({"question": "No answer?", "answer": "no marker"})  # dropped: nothing to check against
    path = tmp_path / "gsm.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = HubProblems(str(path), train_split="all", test_split="all", n_test=2, seed=0)
    assert len(data.problems("test")) == 2 and len(data.problems("train")) == 4
    reward = ExactMatch(data)
    prompt = data.prompts("test")[0]
    answer = data.problems("test")[0].answer
    assert reward([prompt, prompt], [f"Answer: {answer}", "Answer: -1"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="has no 'solution' field"):
        HubProblems(str(path), answer_field="solution", train_split="a", test_split="b").problems("test")
    with pytest.raises(ValueError, match="data.n_test must be set"):
        HubProblems("HuggingFaceH4/MATH-500", train_split="test", test_split="test")  # a hub id: read on first use


@pytest.mark.parametrize("preset, n_test", [("gsm8k", []), ("math500", ["data.n_test=5"])])
def test_local_math_files_split_train_and_test_without_overlap(tmp_path, preset, n_test):
    """A local file has no hub splits: its problems are split once, seeded, no question in both splits."""
    if preset == "gsm8k":
        rows = [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(40)]
    else:
        rows = [{"problem": f"Find {i}^2.", "solution": f"$\\boxed{{{i * i}}}$"} for i in range(40)]
    rows += rows[:3]  # a question met twice is read once
    path = tmp_path / f"{preset}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def split(*overrides):
        data = instantiate(compose_with(f"data={preset}", f"data.path={path}", *n_test, *overrides).data)
        return data, data.prompts("train"), data.prompts("test")

    data, train, test = split()
    held_out = 4 if preset == "gsm8k" else 5  # gsm8k.yaml's n_test null: a tenth of a local file
    assert len(test) == held_out and len(train) == 40 - held_out and len(set(train)) == len(train)
    assert not set(test) & set(train)
    report = data.split_report
    assert (report["train"], report["test"], report["path"]) == (len(train), len(test), str(path))
    assert "seed 0" in report["rule"]
    assert split()[1:] == (train, test)  # deterministic
    _, other_train, other_test = split("data.seed=1")
    assert other_test != test and not set(other_test) & set(other_train)


def test_countdown_checker_evaluates_the_expression_with_the_given_numbers():
    numbers = (3, 4, 5, 5)
    assert evaluate("(3 + 4) * 5", numbers) == 35
    assert evaluate("5 * 5 - 4 + 3 = 24", numbers) == 24  # the left-hand side counts
    assert evaluate("5 / (4 - 3) + 5", numbers) == 10
    assert evaluate("3 * 3", numbers) is None  # 3 given once
    assert evaluate("6 + 1", numbers) is None  # 6 not given
    assert evaluate("5 / (5 - 5)", (5, 5, 5)) is None
    assert evaluate("__import__('os')", numbers) is None
    assert evaluate("3 ** 4", numbers) is None


def test_countdown_puzzles_are_solvable_and_scored_by_checking():
    data = CountdownProblems(n_train=30, n_test=10, count=4, max_number=12, seed=0)
    for problem in data.problems("train") + data.problems("test"):
        assert len(problem.numbers) == 4 and 0 < int(problem.answer) <= 100
        assert problem.question.startswith("Using the numbers " + ", ".join(map(str, problem.numbers)))
    # a puzzle with a known solution: brute force one over pairs and triples of its numbers
    problem, prompt = data.problems("test")[0], data.prompts("test")[0]
    a, b, *_ = problem.numbers
    reward = ExactMatch(data)
    for expression in (f"{a} + {b}", f"{a} * {b}", f"{a} - {b}", f"{b} - {a}"):
        expected = float(evaluate(expression, problem.numbers) == int(problem.answer))
        assert reward([prompt], [f"Answer: {expression}"]) == [expected]
    assert reward([prompt], [f"Answer: {problem.answer}"]) == [0.0]  # the target alone uses no numbers


def test_exact_match_needs_a_problem_set_and_known_prompts():
    with pytest.raises(ValueError, match="reward.problems must be a problem set"):
        ExactMatch(problems=object())
    data = ArithmeticProblems(n_train=5, n_test=2)
    with pytest.raises(ValueError, match="has no problem for the prompt"):
        ExactMatch(data)(["What is the capital of France?"], ["Answer: Paris"])
    problem, prompt = data.problems("train")[0], data.prompts("train")[0]
    boxed = ExactMatch(data, answer_format="boxed")
    assert boxed([prompt] * 2, [f"\\boxed{{{problem.answer}}}", f"Answer: {problem.answer}"]) == [1.0, 0.0]


class SolvesEvenPrompts(Policy):
    """Prompt i: its first sample is right when i % 4 == 0, its fourth when i is even."""

    def __init__(self, data):
        self.data = data

    def sample(self, checkpoint, prompts, sampler, out_dir):
        answers = {self.data.prompt(p): p.answer for p in self.data.problems("test")}
        right = {(0, 0), (3, 0), (3, 2)}
        return [
            Sample(i, p, f"Answer: {answers[p] if (j, i % 4) in right else 'none'}", sample_idx=j)
            for i, p in prompts
            for j in range(sampler.K)
        ]

    def training_job(self, *args):
        raise AssertionError("evaluation never trains")


def test_evaluator_reports_accuracy_and_pass_at_k_for_a_binary_reward(tmp_path):
    data = ArithmeticProblems(n_train=5, n_test=8)
    evaluator = Evaluator(ExactMatch(data), Sampler(K=1, temperature=0.7), best_of_k=4)
    metrics = evaluator.evaluate(SolvesEvenPrompts(data), None, data.prompts("test"), None, tmp_path)
    assert metrics["accuracy"] == metrics["reward"] == 0.25  # one sample per problem: prompts 0 and 4
    assert metrics["pass_at_k"] == 0.5  # any of 4: every even prompt
    evaluator = Evaluator(ExactMatch(data), Sampler(K=1, temperature=0.7), best_of_k=0)
    assert "pass_at_k" not in evaluator.evaluate(
        SolvesEvenPrompts(data), None, data.prompts("test"), None, tmp_path / "b"
    )


def test_reward_config_finds_the_answers_of_the_data_config():
    cfg = compose_with("data=countdown", "reward=exact_match", "data.n_train=20", "data.n_test=4")
    data, reward = instantiate(cfg.data), instantiate(cfg.reward)
    assert reward.answer_format == "answer_line" and reward.problems.prompts("test") == data.prompts("test")
    assert instantiate(compose_with("data=math500", "reward=exact_match").reward).answer_format == "boxed"


def test_arithmetic_preset_builds_its_task(tmp_path):
    cfg = compose_with("experiment=arithmetic_raft")
    assert (cfg.model.name_or_path, cfg.model.chat_template) == ("smollm2-135m-instruct", False)
    assert (cfg.sampler.K, cfg.sampler.temperature, list(cfg.sampler.stop)) == (8, 1.0, ["\n"])
    data = instantiate(cfg.data)
    prompt = data.prompts("test")[0]
    assert prompt.startswith("Question: Mia has 3 shells.") and prompt.endswith("\nSolution:")
    assert len(data.prompts("train")) == 1000 and len(data.prompts("test")) == 64
    cfg.task.output_dir = str(tmp_path)  # ${hydra:runtime.output_dir} exists only inside a Hydra run
    task = instantiate(cfg.task, _convert_="all")  # constructors validate; no weights load yet
    assert task.reward.problems.prompts("test") == data.prompts("test") and task.evaluator.every == 1
    sweep = compose_with("experiment=arithmetic_methods")
    assert sweep.data == cfg.data and sweep.sampler == cfg.sampler and sweep.hydra.sweeper.params.seed


def test_gsm8k_qwen_preset_is_verls_setting():
    cfg = compose_with("experiment=paper/gsm8k_qwen")
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and cfg.trainer.accelerator == "gpu"
    assert (cfg.data.path, cfg.data.name, cfg.data.extract) == ("openai/gsm8k", "main", "gsm8k")
    assert cfg.data.answer_format == "hashes" and cfg.reward.answer_format == "hashes"
    assert (cfg.sampler.K, cfg.sampler.temperature, cfg.sampler.max_new_tokens) == (5, 1.0, 512)
    assert cfg.evaluator.n_prompts is None and cfg.evaluator.sampler.top_k == 1  # greedy, all 1,319 problems
    data = instantiate(cfg.data)  # validates without the hub: the rows are read on first use
    problem = data.prompt(type("P", (), {"question": "Q?"})())
    assert problem == 'Q? Let\'s think step by step and output the final answer after "####".'


def test_a_reward_that_is_not_a_reward_class_stops_at_start_naming_its_key():
    """The evaluator and the loop read `binary` and call `close` on the Reward base class: a plain object there
    stops when the run is built, naming the key, not minutes in."""
    from raft.evaluation.evaluator import Evaluator
    from raft.sampling.sampler import Sampler

    with pytest.raises(ValueError, match="evaluator.reward: dict is not a raft.rewards.base.Reward"):
        Evaluator(reward={"scale": 1.0}, sampler=Sampler(K=1))
