"""Countdown puzzles (`data=countdown`): reach a target from given numbers with + - * / and parentheses.

Generated offline from a seed: the target is the value of a random expression over some of the numbers, so
every puzzle has a solution. An answer is an expression; it solves the puzzle when it uses only the given
numbers, each at most once, and evaluates exactly (fractions, no rounding) to the target.
"""

from __future__ import annotations

import ast
import operator
import random
from fractions import Fraction

from raft.data.arithmetic import distinct_problems
from raft.data.problems import Problem, ProblemSet, split_problems

OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def countdown_problem(rng: random.Random, count: int, max_number: int, max_target: int) -> Problem:
    for _ in range(10_000):
        numbers = [rng.randint(1, max_number) for _ in range(count)]
        values = [Fraction(n) for n in rng.sample(numbers, rng.randint(2, count))]
        while len(values) > 1:  # combine two values at random until one is left: the target
            a, b = values.pop(rng.randrange(len(values))), values.pop(rng.randrange(len(values)))
            op = rng.choice(list(OPS.values()))
            if op is operator.truediv and b == 0:
                op = operator.add
            values.append(op(a, b))
        target = values[0]
        if target.denominator == 1 and 0 < target <= max_target and target not in numbers:
            listed = ", ".join(map(str, numbers))
            question = f"Using the numbers {listed}, each at most once, and + - * / with parentheses, make {target}."
            return Problem(question=question, answer=str(target), numbers=tuple(numbers))
    raise ValueError(f"data: no countdown target <= {max_target} from {count} numbers up to {max_number}")


def evaluate(expression: str, numbers: tuple[int, ...]) -> Fraction | None:
    """The exact value of an arithmetic expression over `numbers` (each used at most once), else None."""
    expression = expression.replace("×", "*").replace("÷", "/").replace("x", "*")
    if "=" in expression:  # "3 * 4 + 2 = 14": the expression is the left-hand side
        expression = expression.split("=")[0]
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    available = list(numbers)

    def value(node) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value not in available:
                raise ValueError("a number not given, or used twice")
            available.remove(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not + - * / over integers")

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError):
        return None


class CountdownProblems(ProblemSet):
    graded_by_value = False  # the answer is an expression, checked by evaluating it (lm-eval extraction can't)

    def __init__(
        self,
        n_train: int = 1000,
        n_test: int = 64,
        count: int = 3,
        max_number: int = 20,
        max_target: int = 100,
        seed: int = 0,
        limit: int | None = None,
        answer_format: str = "answer_line",
        template: str = "{question}\n{instruction}",
    ):
        super().__init__(answer_format, template)
        if n_train < 1 or n_test < 0:
            raise ValueError(f"data.n_train must be >= 1 and data.n_test >= 0, got {n_train} and {n_test}")
        if count < 2:
            raise ValueError(f"data.count (numbers per puzzle) must be >= 2, got {count}")
        if max_number < 1 or max_target < 1:
            raise ValueError(f"data.max_number and data.max_target must be >= 1, got {max_number} and {max_target}")
        if limit is not None and limit < 0:
            raise ValueError(f"data.limit must be >= 0 or null, got {limit}")
        self.n_train, self.n_test, self.count, self.max_number = n_train, n_test, count, max_number
        self.max_target, self.seed, self.limit = max_target, seed, limit

    def _load(self):
        problems = distinct_problems(
            lambda rng: countdown_problem(rng, self.count, self.max_number, self.max_target),
            self.n_test + self.n_train,
            self.seed,
        )
        return split_problems(problems, self.n_test, self.limit)

    def check(self, problem: Problem, answer: str) -> bool:
        return evaluate(answer, problem.numbers) == Fraction(problem.answer)
