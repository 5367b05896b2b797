"""Multi-step arithmetic word problems with an integer answer, generated offline from a seed (`data=arithmetic`).

A problem starts with a count of things and changes it `steps` times, one sentence per step: add, subtract,
multiply (buy packs of several: add a product) or divide (share equally, keep one share). Difficulty grows
with `steps` and `max_operand`; every count stays a whole number >= 0, so the answer is an integer and no
step needs rounding. An answer is right when it is that integer exactly (`raft.data.answers.same_number`: "12",
"12.0", "12 apples", "$12", "1,200" for 1200), never by float tolerance or symbolic parsing.
"""

from __future__ import annotations

import random

from raft.data.answers import same_number
from raft.data.problems import Problem, ProblemSet, split_problems

NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Omar", "Priya", "Sam")
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "stamps", "shells", "cards")
OPERATIONS = ("add", "subtract", "multiply", "divide")


def _step(rng: random.Random, op: str, count: int, name: str, items: str, max_operand: int) -> tuple[str, int] | None:
    """(sentence, new count) for one operation on `count`, or None when it cannot apply (nothing to divide)."""
    if op == "add":
        n = rng.randint(1, max_operand)
        return rng.choice((f"{name} finds {n} more {items}.", f"A friend gives {name} {n} {items}.")), count + n
    if op == "subtract":
        if count < 1:
            return None
        n = rng.randint(1, min(count, max_operand))
        return rng.choice((f"{name} gives {n} {items} away.", f"{name} loses {n} {items}.")), count - n
    if op == "multiply":
        packs, each = rng.randint(2, max(2, min(9, max_operand))), rng.randint(2, max(2, min(12, max_operand)))
        return f"{name} buys {packs} packs with {each} {items} in each pack.", count + packs * each
    divisors = [d for d in range(2, min(count, 10) + 1) if count % d == 0]
    if not divisors:
        return None
    d = rng.choice(divisors)
    return f"{name} shares the {items} equally among {d} friends and keeps one share.", count // d


def arithmetic_problem(rng: random.Random, steps: int, max_operand: int, operations: tuple[str, ...]) -> Problem:
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    count = rng.randint(1, max_operand)
    sentences = [f"{name} has {count} {items}."]
    while len(sentences) <= steps:
        step = _step(rng, rng.choice(operations), count, name, items, max_operand)
        if step is not None:
            sentences.append(step[0])
            count = step[1]
    sentences.append(f"How many {items} does {name} have now?")
    return Problem(question=" ".join(sentences), answer=str(count))


def distinct_problems(make, n: int, seed: int) -> list[Problem]:
    """n problems with distinct questions from one seeded stream (a prompt must name one answer)."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(100 * n + 1000):
        if len(out) == n:
            return out
        problem = make(rng)
        if problem.question not in seen:
            seen.add(problem.question)
            out.append(problem)
    raise ValueError(f"data: only {len(out)} distinct problems of {n} at this difficulty; lower n_train / n_test")


class ArithmeticProblems(ProblemSet):
    def __init__(
        self,
        n_train: int = 1000,
        n_test: int = 64,
        steps: int = 2,
        max_operand: int = 20,
        operations: tuple[str, ...] = OPERATIONS,
        seed: int = 0,
        limit: int | None = None,
        answer_format: str = "answer_line",
        template: str = "{question}\n{instruction}",
    ):
        super().__init__(answer_format, template)
        if n_train < 1:
            raise ValueError(f"data.n_train must be >= 1, got {n_train}")
        if n_test < 0:
            raise ValueError(f"data.n_test must be >= 0, got {n_test}")
        if steps < 1:
            raise ValueError(f"data.steps must be >= 1, got {steps}")
        if max_operand < 1:
            raise ValueError(f"data.max_operand must be >= 1, got {max_operand}")
        operations = tuple(operations)
        if not operations or any(op not in OPERATIONS for op in operations):
            raise ValueError(f"data.operations must be a non-empty subset of {OPERATIONS}, got {list(operations)}")
        if limit is not None and limit < 0:
            raise ValueError(f"data.limit must be >= 0 or null, got {limit}")
        self.n_train, self.n_test, self.steps, self.max_operand = n_train, n_test, steps, max_operand
        self.operations, self.seed, self.limit = operations, seed, limit

    def _load(self):
        problems = distinct_problems(
            lambda rng: arithmetic_problem(rng, self.steps, self.max_operand, self.operations),
            self.n_test + self.n_train,
            self.seed,
        )
        return split_problems(problems, self.n_test, self.limit)

    def check(self, problem: Problem, answer: str) -> bool:
        """Exact: the reference is an integer, so the answer must be that number (no float tolerance)."""
        return same_number(answer, problem.answer)
