"""Math word problems from the hub by id (`data=gsm8k`: openai/gsm8k, `data=math500`: HuggingFaceH4/MATH-500).

Each row gives a question and a solution; the reference answer is extracted the dataset's standard way:
GSM8K's after "####" (thousands commas removed), MATH's from the solution's last \\boxed{}.

A local JSON-lines file with the same fields works in place of a hub id. It is one pool of problems, whatever
train_split / test_split say: `n_test` of them (when null, a tenth, at least one) are held out for test by a
shuffle seeded with `seed`, and the rest train, no question in both (a repeated question is read once).
The split is logged and kept in `split_report`.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Iterable

from raft.data.answers import last_boxed
from raft.data.preference_pairs import is_hub_id
from raft.data.problems import Problem, ProblemSet, split_problems

EXTRACTORS = ("gsm8k", "boxed", "field")
LOCAL_TEST_SHARE = 0.1  # a local file with n_test null holds out this share of its problems (at least one)
log = logging.getLogger(__name__)


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
        self.local = not is_hub_id(path)
        if train_split == test_split and n_test is None and not self.local:
            raise ValueError(f"data.n_test must be set when train and test come from one split ({test_split!r})")
        self.path, self.name, self.train_split, self.test_split = path, name, train_split, test_split
        self.question_field, self.answer_field, self.extract = question_field, answer_field, extract
        self.n_test, self.limit, self.seed = n_test, limit, seed
        self.split_report: dict[str, Any] | None = None  # how the problems were split, once read

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
        if self.local:  # one file, one pool: train_split / test_split name nothing in it
            problems = self.read("file")
            n_test = self.n_test if self.n_test is not None else max(1, round(LOCAL_TEST_SHARE * len(problems)))
            rule = f"{'data.n_test' if self.n_test is not None else 'a tenth'} held out, shuffled with seed {self.seed}"
            return self._held_out(problems, n_test, rule)
        if self.train_split == self.test_split:  # MATH-500 has one split: hold out n_test, train on the rest
            rule = f"data.n_test of split {self.test_split!r} held out, shuffled with seed {self.seed}"
            return self._held_out(self.read(self.test_split), self.n_test, rule)
        train, test = self.read(self.train_split), self.read(self.test_split)
        splits = {"train": train[: self.limit] if self.limit is not None else train, "test": test[: self.n_test]}
        self._report(splits, f"hub splits {self.train_split!r} / {self.test_split!r}")
        return splits

    def _held_out(self, problems: list[Problem], n_test: int, rule: str) -> dict[str, list[Problem]]:
        random.Random(self.seed).shuffle(problems)
        splits = split_problems(problems, n_test, self.limit)
        self._report(splits, rule)
        return splits

    def _report(self, splits: dict[str, list[Problem]], rule: str) -> None:
        n_train, n_test = len(splits["train"]), len(splits["test"])
        self.split_report = {"path": self.path, "rule": rule, "train": n_train, "test": n_test}
        log.info("data %s: %d train, %d test problems (%s)", self.path, n_train, n_test, rule)
