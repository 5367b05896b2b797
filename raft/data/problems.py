"""Problems with a checkable final answer, as a prompt source: the base of the verifiable tasks.

A problem set gives the loop its prompts (`prompts("train")`, `prompts("test")`, as every data source does)
and gives the exact-match reward what it needs to score a response: the problem behind a prompt
(`problem(prompt)`) and whether an extracted answer solves it (`check`). The reward is built from the same
data config, so it finds the answers of exactly the prompts the loop samples, in both splits.

`check` grades the way each kind of problem needs: MATH/GSM8K-style answers by math-verify
(`raft.data.answers.same_answer`, the default), generated arithmetic by exact numbers (`same_number`), Countdown by
evaluating the expression exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from raft.data.answers import check_format, instruction, same_answer
from raft.data.sources import _check_split


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # the reference final answer (Countdown: the target)
    numbers: tuple[int, ...] = ()  # Countdown: the numbers the expression may use


class ProblemSet:
    """Prompts = question + the answer-format instruction. Subclasses supply `_load() -> {split: [Problem]}`."""

    chat = True
    graded_by_value = True  # an answer is compared with `Problem.answer` (Countdown: False, it is an expression)

    def __init__(self, answer_format: str = "answer_line", template: str = "{question}\n{instruction}"):
        self.answer_format = check_format(answer_format, "data.answer_format")
        if "{question}" not in template:
            raise ValueError(f"data.template must contain {{question}}, got {template!r}")
        self.template = template
        self._splits: dict[str, list[Problem]] | None = None
        self._by_prompt: dict[str, Problem] | None = None

    def _load(self) -> dict[str, list[Problem]]:
        raise NotImplementedError

    def problems(self, split: str) -> list[Problem]:
        _check_split(split)
        if self._splits is None:
            self._splits = self._load()
        return list(self._splits[split])

    def prompt(self, problem: Problem) -> str:
        return self.template.format(question=problem.question, instruction=instruction(self.answer_format))

    def prompts(self, split: str) -> list[str]:
        return [self.prompt(p) for p in self.problems(split)]

    def references(self, split: str) -> list[str] | None:
        _check_split(split)
        return None  # answers, not reference responses: no perplexity

    def answers(self, split: str) -> list[str]:
        return [p.answer for p in self.problems(split)]

    def pairs(self, split: str):
        raise ValueError(f"{type(self).__name__} has problems and answers, no preference pairs")

    def problem(self, prompt: str) -> Problem:
        """The problem a prompt of either split asks; a prompt from elsewhere is an error, never a silent 0."""
        if self._by_prompt is None:
            self._by_prompt = {}
            for split in ("test", "train"):  # a question in both splits keeps its test answer
                for p in self.problems(split):
                    self._by_prompt.setdefault(self.prompt(p), p)
        try:
            return self._by_prompt[prompt]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__} has no problem for the prompt {prompt[:60]!r}...: the reward's data must be "
                "the run's data (reward.problems: ${data})"
            ) from None

    def check(self, problem: Problem, answer: str) -> bool:
        """Whether an extracted final answer solves the problem: equal to the reference as math-verify judges it.

        Generated tasks override this with exact checks (arithmetic: Fraction equality; Countdown: the value
        of the expression)."""
        return same_answer(answer, problem.answer)


def split_problems(problems: list[Problem], n_test: int, limit: int | None) -> dict[str, list[Problem]]:
    """The first n_test distinct questions are held out; the rest (capped at limit) train.

    A question met again is dropped (its first answer counts), so no question is in both splits."""
    seen: set[str] = set()
    problems = [p for p in problems if not (p.question in seen or seen.add(p.question))]
    if n_test < 0:
        raise ValueError(f"data.n_test must be >= 0, got {n_test}")
    if n_test >= len(problems):
        raise ValueError(f"data.n_test={n_test} leaves no training problems out of {len(problems)}")
    train = problems[n_test:]
    return {"test": problems[:n_test], "train": train[:limit] if limit is not None else train}
