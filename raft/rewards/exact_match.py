"""Exact match of the final answer (verifiable tasks): 1 when the response's answer solves its problem, else 0.

The answer is read only in the format the prompt asked for (`answer_format`); a response without it scores
0. The problem behind each prompt comes from `problems`, the run's own data config (`${data}`), so the
reward needs nothing beyond the (prompt, response) pairs every reward gets. The problem set grades the
answer (`problems.check`): math-verify for GSM8K / MATH, exact numbers for generated arithmetic, the
expression's exact value for Countdown.

`extraction: strict | flexible` instead scores as lm-eval's GSM8K task does (strict-match: the first
"#### <number>"; flexible-extract: the last number in the response), with lm-eval's own string comparison,
so the accuracy is comparable with lm-eval's published exact_match numbers.
"""

from __future__ import annotations

from typing import Sequence

from raft.data.answers import check_extraction, check_format, lm_eval_match, read_answer
from raft.rewards.base import Reward


class ExactMatch(Reward):
    binary = True  # scores are 0 or 1: the evaluator reports accuracy and pass@K

    def __init__(self, problems, answer_format: str = "answer_line", batch_size: int = 256, extraction: str = "format"):
        if not callable(getattr(problems, "problem", None)) or not callable(getattr(problems, "check", None)):
            raise ValueError(
                f"reward.problems must be a problem set with reference answers (data=arithmetic, countdown, gsm8k, "
                f"math500), got {type(problems).__name__}"
            )
        self.problems = problems
        self.answer_format = check_format(answer_format, "reward.answer_format")
        self.extraction = check_extraction(extraction, "reward.extraction")
        if extraction != "format" and not getattr(problems, "graded_by_value", True):
            raise ValueError(
                f"reward.extraction={extraction!r} reads a number, but {type(problems).__name__} answers are "
                "expressions checked by evaluating them: use reward.extraction=format"
            )
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [self.score(prompt, response) for prompt, response in zip(prompts, responses)]

    def score(self, prompt: str, response: str) -> float:
        problem = self.problems.problem(prompt)
        answer = read_answer(response, self.answer_format, self.extraction)
        if answer is None:
            return 0.0
        if self.extraction != "format":
            return float(lm_eval_match(answer, problem.answer))
        return float(self.problems.check(problem, answer))
