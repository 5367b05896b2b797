"""Answer grading as the field grades: math-verify equivalence of GSM8K / MATH answers behind raft's answer formats,
lm-eval's GSM8K strict / flexible extraction, and exact numbers for the generated tasks."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from raft.data import answers
from raft.data.answers import extract_answer, same_answer  # the rest as answers.X: the table runs on old code too
from raft.data.arithmetic import ArithmeticProblems
from raft.data.countdown import CountdownProblems
from raft.data.math_hub import HubProblems
from raft.rewards.exact_match import ExactMatch

# (given, reference, equivalent): the answer a response gives, the dataset's reference answer
EQUIVALENCES = [
    ("\\frac12", "\\frac{1}{2}", True),
    ("\\frac12", "0.5", True),
    ("0.5", "\\frac{1}{2}", True),
    (".5", "0.5", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("x = 5", "5", True),
    ("5", "x = 5", True),
    ("y = 2x+3", "2x+3", True),
    ("\\{2,1\\}", "\\{1,2\\}", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\$12", "12", True),
    ("$12", "12", True),
    ("\\$1,000.50", "1000.5", True),
    ("18 dollars", "18", True),
    ("12 apples", "12", True),
    ("18", "18 \\text{ dollars}", True),
    ("1,000", "1000", True),
    ("1,000,000", "1000000", True),
    ("1,250", "1250", True),
    ("7.0", "7", True),
    ("-5", "-5.0", True),
    ("\\frac{1}{2}", "1/2", True),
    ("10^\\circ", "10", True),
    ("50\\%", "50", True),
    ("\\text{(C)}", "C", True),
    ("\\text{Monday}", "\\text{Monday}", True),
    # not the same answer
    ("2,3", "23", False),  # a list of two numbers, not 23 with a comma
    ("3,5", "35", False),
    ("12,34", "1234", False),  # not a thousands comma
    ("8", "9", False),
    ("-3", "3", False),
    ("x+1", "x-1", False),
    ("(x+1)^2", "x^2+2x+2", False),
    ("0.33", "\\frac13", False),
    ("11.9999999", "12", False),
    ("[1,2]", "(1,2)", False),  # closed vs open interval
    ("\\{1,2\\}", "\\{1,3\\}", False),
    ("\\pi", "3.14", False),
    ("3 and 4", "3", False),  # words after a number are a unit only when they are not maths
    ("\\text{Monday}", "\\text{Tuesday}", False),
    ("10^{10^{10}}", "5", False),  # too big for sympy: compared as text, at once
]


@pytest.mark.parametrize("given, reference, equivalent", EQUIVALENCES)
def test_equivalence_table(given, reference, equivalent):
    assert same_answer(given, reference) is equivalent


@pytest.mark.parametrize(
    "response, answer_format, expected",
    [
        ("48 + 24 = 72\n#### 18 dollars", "hashes", "18"),  # _clean drops the unit, as it always promised
        ("So she has 12.\nAnswer: 12 apples", "answer_line", "12"),
        ("**Answer:** $12.50 per hour.", "answer_line", "12.50"),
        ("Answer: 3 and 4", "answer_line", "3 and 4"),
        ("Answer: 2,3", "answer_line", "2,3"),  # kept as written: "2,3" is not "23"
        ("Answer: x = 5", "answer_line", "x = 5"),
        ("so $\\boxed{\\frac12}$", "boxed", "\\frac12"),
        ("so 3 + 9 = 12, in all", "last_number", "12"),
    ],
)
def test_extraction_keeps_the_answer_and_drops_units(response, answer_format, expected):
    assert extract_answer(response, answer_format) == expected


def local_problems(tmp_path, rows, **kwargs) -> HubProblems:
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return HubProblems(str(path), **kwargs)


def test_reward_grades_gsm8k_and_math_answers_in_the_prompts_format(tmp_path):
    gsm = local_problems(
        tmp_path,
        [{"question": f"Q{i}?", "answer": f"work\n#### {a}"} for i, a in enumerate(["18", "12", "1,000", "23", "0.5"])],
        n_test=0,
    )
    prompts = {p.answer: gsm.prompt(p) for p in gsm.problems("train")}
    cases = [  # (reference, response, right)
        ("18", "Some work.\n#### 18 dollars", True),
        ("12", "#### \\$12", True),
        ("1000", "#### 1,000", True),
        ("23", "#### 2,3", False),
        ("0.5", "#### \\frac12", True),
        ("0.5", "#### .5", True),
        ("18", "The answer is 18.", False),  # no "####": the format was not followed
    ]
    hashes = ExactMatch(gsm, answer_format="hashes")
    scores = hashes([prompts[r] for r, _, _ in cases], [response for _, response, _ in cases])
    assert scores == [float(right) for _, _, right in cases]
    line = ExactMatch(gsm, answer_format="answer_line")
    assert line([prompts["12"], prompts["12"]], ["Answer: 12 apples", "#### 12"]) == [1.0, 0.0]

    math = local_problems(
        tmp_path,
        [
            {"problem": "Expand.", "solution": "So $\\boxed{x^2+2x+1}$."},
            {"problem": "Solve.", "solution": "$\\boxed{\\{1,2\\}}$"},
            {"problem": "Half?", "solution": "$\\boxed{\\frac{1}{2}}$"},
            {"problem": "x?", "solution": "$\\boxed{5}$"},
        ],
        question_field="problem",
        answer_field="solution",
        extract="boxed",
        n_test=0,
    )
    by_question = {p.question: math.prompt(p) for p in math.problems("train")}
    boxed = ExactMatch(math, answer_format="boxed")
    responses = {
        "Expand.": ["\\boxed{(x+1)^2}", "\\boxed{x^2+2x+2}"],
        "Solve.": ["\\boxed{\\{2,1\\}}", "\\boxed{\\{1,3\\}}"],
        "Half?": ["\\boxed{\\frac12}", "\\boxed{0.5}"],
        "x?": ["\\boxed{x = 5}", "\\boxed{6}"],
    }
    for question, (right, other) in responses.items():
        expected = [1.0, 1.0] if question == "Half?" else [1.0, 0.0]
        assert boxed([by_question[question]] * 2, [right, other]) == expected, question


@pytest.mark.parametrize(
    "response, strict, flexible",
    [
        ("48/2 = 24 clips\n#### 72", "72", "72"),
        ("#### 1,000.", "1,000.", "1,000."),
        ("#### 5 then later #### 6", "5", "6"),  # strict: the first; flexible: the last number
        ("####7", None, "7"),  # strict needs "#### " with the space
        ("I had 3 apples, then 12.", None, "12."),
        ("It costs $18 in all", None, "$18"),
        ("no number here", None, None),
    ],
)
def test_lm_eval_gsm8k_extraction(response, strict, flexible):
    assert answers.lm_eval_extract(response, "strict") == answers.read_answer(response, "hashes", "strict") == strict
    assert (
        answers.lm_eval_extract(response, "flexible") == answers.read_answer(response, "hashes", "flexible") == flexible
    )


def test_lm_eval_comparison_is_lm_evals_own():
    assert answers.lm_eval_match("1,000.", "1000") and answers.lm_eval_match("$18", "18")
    assert answers.lm_eval_match("2,3", "23")  # lm-eval drops every comma: its numbers, reproduced as they are
    assert not answers.lm_eval_match("5.0", "5") and not answers.lm_eval_match("18 dollars", "18")


def test_reward_extraction_option(tmp_path):
    gsm = local_problems(
        tmp_path, [{"question": "Q?", "answer": "w\n#### 1000"}, {"question": "R?", "answer": "#### 3"}]
    )
    problem = next(p for p in gsm.problems("train") + gsm.problems("test") if p.answer == "1000")
    prompt = gsm.prompt(problem)
    responses = ["#### 1,000", "So 1,000 in all.", "#### 999\nor rather 1000", "#### 1000.0"]
    assert ExactMatch(gsm, answer_format="hashes")([prompt] * 4, responses) == [1.0, 0.0, 0.0, 1.0]
    strict = ExactMatch(gsm, answer_format="hashes", extraction="strict")
    assert strict([prompt] * 4, responses) == [1.0, 0.0, 0.0, 0.0]  # lm-eval: "1000.0" is not "1000"
    flexible = ExactMatch(gsm, answer_format="hashes", extraction="flexible")
    assert flexible([prompt] * 4, responses) == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="reward.extraction must be one of"):
        ExactMatch(gsm, extraction="loose")
    with pytest.raises(ValueError, match="answers are expressions"):
        ExactMatch(CountdownProblems(n_train=5, n_test=2), extraction="strict")


def test_evaluate_module_takes_the_extraction():
    from raft.evaluation.evaluate_modules import load

    metric = load("exact_match")
    predictions, references = ["#### 1,000", "So 1,000.", "Answer: \\frac12"], ["1000", "1000", "0.5"]
    assert metric.compute(predictions=predictions, references=references) == {"exact_match": pytest.approx(1 / 3)}
    assert metric.compute(predictions=predictions, references=references, answer_format="hashes") == {
        "exact_match": pytest.approx(1 / 3)
    }
    flexible = metric.compute(predictions=predictions, references=references, extraction="flexible")
    assert flexible == {"exact_match": pytest.approx(2 / 3)}


def test_generated_tasks_grade_exact_numbers_without_math_verify(monkeypatch):
    def no_symbolic(*args):
        raise AssertionError("math-verify was called")

    monkeypatch.setattr(answers, "_parse", no_symbolic)
    data = ArithmeticProblems(n_train=20, n_test=4, seed=1)
    reward = ExactMatch(data)
    problem, prompt = data.problems("test")[0], data.prompts("test")[0]
    n = int(problem.answer)
    responses = [f"Answer: {n}", f"Answer: {n}.0", f"Answer: {n} apples", f"Answer: ${n}", f"Answer: {n + 1}"]
    responses += [f"Answer: {n}.0000001", f"Answer: {n} and {n + 1}", f"Answer: \\frac{{{2 * n}}}{{2}}"]
    assert reward([prompt] * len(responses), responses) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert answers.same_number("0.333333", "1/3") is False  # exact: no float tolerance (math-verify would accept it)
    assert (
        answers.number("2,3") is None
        and answers.number("1,000") == 1000
        and answers.number(".5") == answers.number("\\frac12") == 0.5
    )
    countdown = CountdownProblems(n_train=5, n_test=2, count=3)
    target = countdown.problems("test")[0]
    assert countdown.check(target, target.answer) is False  # the target alone uses none of the numbers
    # integer answers (all of GSM8K) are settled exactly, without math-verify: fast
    start = time.perf_counter()
    assert sum(same_answer(f"{i:,}", str(i)) for i in range(2000)) == 2000
    assert time.perf_counter() - start < 2.0


def test_grading_works_outside_the_main_thread():
    """math-verify's timer is SIGALRM, main-thread only: elsewhere grading runs without it, never raising."""
    cases = [(g, r, e) for g, r, e in EQUIVALENCES if "\\" in g or "^" in g or "=" in g]
    answers._parse.cache_clear()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda case: same_answer(case[0], case[1]), cases))
    assert results == [e for _, _, e in cases]
    assert answers._timeout(5) == 5 and answers._timeout(None) is None
    seen = []
    thread = threading.Thread(target=lambda: seen.append(answers._timeout(5)))
    thread.start()
    thread.join()
    assert seen == [None]


def test_answers_too_big_for_sympy_are_not_given_to_it():
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:  # no timer here: only the guard keeps this quick
        assert pool.submit(same_answer, "9^{9^{9}}", "5").result(timeout=30) is False
        assert pool.submit(same_answer, "10^{10000000}", "10^{10000000}").result(timeout=30) is True
        assert pool.submit(same_answer, "1000000!", "5").result(timeout=30) is False
    assert time.perf_counter() - start < 5.0
