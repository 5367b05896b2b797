"""Math word problems from the hub by id (`data=gsm8k`: openai/gsm8k, `data=math500`: HuggingFaceH4/MATH-500).

Each row gives a question and a solution; the reference answer is extracted the dataset's standard way:
GSM8K's after "####" (thousands commas removed), MATH's from the solution's last \\boxed{}. A local
JSON-lines file with the same fields works in place of a hub id.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterable

from raft.answers import last_boxed
from raft.data.preference_pairs import is_hub_id
from raft.data.problems import Problem, ProblemSet, split_problems

EXTRACTORS = ("gsm8k", "boxed", "field")


def gsm8k_answer(solution: str) -> str | None:
    """GSM8K's final answer: the text after the last "####", without thousands commas."""
    if "####" not in solution:
        return None
    return solution.rsplit("####", 1)[1].strip().replace(",", "") or None


def reference_answer(solution: str, extract: str) -> str | None:
    if extract == "gsm8k":
        return gsm8k_answer(solution)
    if extract == "boxed":
        return last_boxed(solution)
    return solution.strip() or None


def _rows(path: str, name: str | None, split: str) -> Iterable[dict[str, Any]]:
    if not is_hub_id(path):
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    import datasets  # lazy: heavy, and only hub ids need it

    return datasets.load_dataset(path, name, split=split)


class HubProblems(ProblemSet):
    def __init__(
        self,
        path: str,
        name: str | None = None,
        train_split: str = "train",
        test_split: str = "test",
        question_field: str = "question",
        answer_field: str = "answer",
        extract: str = "gsm8k",
        n_test: int | None = None,
        limit: int | None = None,
        seed: int = 0,
        answer_format: str = "answer_line",
        template: str = "{question}\n{instruction}",
    ):
        super().__init__(answer_format, template)
        path = str(path)
        if not is_hub_id(path) and not Path(path).expanduser().is_file():
            raise ValueError(f"data.path={path!r} is neither a hub dataset id nor a file")
        if extract not in EXTRACTORS:
            raise ValueError(f"data.extract must be one of {EXTRACTORS}, got {extract!r}")
        for key, value in (("n_test", n_test), ("limit", limit)):
            if value is not None and value < 0:
                raise ValueError(f"data.{key} must be >= 0 or null, got {value}")
        if train_split == test_split and n_test is None:
            raise ValueError(f"data.n_test must be set when train and test come from one split ({test_split!r})")
        self.path, self.name, self.train_split, self.test_split = path, name, train_split, test_split
        self.question_field, self.answer_field, self.extract = question_field, answer_field, extract
        self.n_test, self.limit, self.seed = n_test, limit, seed

    def read(self, split: str) -> list[Problem]:
        problems = []
        for i, row in enumerate(_rows(self.path, self.name, split)):
            for field in (self.question_field, self.answer_field):
                if field not in row:
                    raise ValueError(f"data: row {i} of {self.path} ({split}) has no {field!r} field")
            answer = reference_answer(str(row[self.answer_field]), self.extract)
            if answer is not None:  # a solution without a final answer cannot be checked
                problems.append(Problem(question=str(row[self.question_field]).strip(), answer=answer))
        return problems

    def _load(self):
        if self.train_split == self.test_split:  # MATH-500 has one split: hold out n_test, train on the rest
            problems = self.read(self.test_split)
            random.Random(self.seed).shuffle(problems)
            return split_problems(problems, self.n_test, self.limit)
        train, test = self.read(self.train_split), self.read(self.test_split)
        return {"train": train[: self.limit] if self.limit is not None else train, "test": test[: self.n_test]}
