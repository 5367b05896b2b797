"""`data=prompts`: your own prompts from a JSON-lines / JSON / CSV / Parquet file or a hub dataset.

Each row has a `prompt` column (another name: `prompt_key`), or a `messages` column holding one user turn
(a leading system turn is refused: set `model.system_prompt`); any other columns are the row's extras, handed to
a reward that asks for them (`reward=function`, as TRL hands dataset columns to its reward functions). Rows are
read through Hugging Face `datasets`. The held-out prompts come from `test_path` (a file or hub split of their
own) or, without it, `n_test` rows drawn with `seed`; a test prompt whose text is also a training prompt is
dropped from the test split, so the two never overlap.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from raft.data.preference_pairs import is_hub_id

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SPLITS = ("train", "test")


class PromptTable:
    chat = True  # the policy wraps each prompt in its chat template (model.chat_template)

    def __init__(
        self,
        path: str,
        prompt_key: str = "prompt",
        test_path: str | None = None,
        n_test: int = 50,
        seed: int = 0,
        limit: int | None = None,
        hub_split: str = "train",
        test_hub_split: str = "test",
    ):
        if n_test < 0:
            raise ValueError(f"data.n_test must be >= 0, got {n_test}")
        if limit is not None and limit < 0:
            raise ValueError(f"data.limit must be >= 0 or null, got {limit}")
        for key, value in (("path", path), ("test_path", test_path)):
            if value is not None:
                _check_source(str(value), key)
        self.path, self.prompt_key, self.test_path = str(path), prompt_key, test_path
        self.n_test, self.seed, self.limit = n_test, seed, limit
        self.hub_split, self.test_hub_split = hub_split, test_hub_split
        self._splits: dict[str, list[dict[str, Any]]] | None = None
        if not is_hub_id(self.path) and (test_path is None or not is_hub_id(str(test_path))):
            self._load()  # a broken local file fails now, before any model loads

    def _rows(self, source: str, split: str, key: str) -> list[dict[str, Any]]:
        import datasets

        if is_hub_id(source):
            table = datasets.load_dataset(source, split=split)
        else:
            table = datasets.load_dataset(FORMATS[Path(source).suffix], data_files=str(Path(source).expanduser()))
            table = table["train"]  # datasets names a file's only split "train"
        rows = [_as_row(dict(row), self.prompt_key, f"{key} row {i}") for i, row in enumerate(table)]
        if not rows:
            raise ValueError(f"data.{key}={source!r} has no rows")
        return rows

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        if self._splits is None:
            rows = self._rows(self.path, self.hub_split, "path")
            if self.test_path is not None:
                train, test = rows, self._rows(str(self.test_path), self.test_hub_split, "test_path")
            else:
                if self.n_test >= len(rows):
                    raise ValueError(f"data.n_test={self.n_test} leaves no training prompts out of {len(rows)}")
                order = list(range(len(rows)))
                random.Random(self.seed).shuffle(order)
                held = set(order[: self.n_test])
                train = [r for i, r in enumerate(rows) if i not in held]
                test = [r for i, r in enumerate(rows) if i in held]
            self._extras = _extras_by_prompt(train + test)
            seen = {r["prompt"] for r in train}
            test = [r for r in test if r["prompt"] not in seen]  # the same text in both splits: train keeps it
            train = train[: self.limit] if self.limit is not None else train
            self._splits = {"train": train, "test": test}
        return self._splits

    def prompts(self, split: str) -> list[str]:
        _check_split(split)
        return [r["prompt"] for r in self._load()[split]]

    def references(self, split: str) -> list[str] | None:
        _check_split(split)
        return None  # prompts only: no reference responses for perplexity

    def columns(self) -> set[str]:
        """The names of the extra columns the rows have."""
        self._load()
        return {key for extras in self._extras.values() for key in extras}

    def extras(self, prompt: str) -> dict[str, Any]:
        """The columns of the row a prompt came from, other than the prompt itself."""
        self._load()
        if prompt not in self._extras:
            raise KeyError(f"no row of data.path has the prompt {prompt[:60]!r}")
        return self._extras[prompt]


def _check_source(value: str, key: str) -> None:
    if is_hub_id(value):
        return
    local = Path(value).expanduser()
    if not local.is_file():
        raise ValueError(f"data.{key}={value!r} is neither a file nor a hub dataset id (owner/name)")
    if local.suffix not in FORMATS:
        raise ValueError(f"data.{key}={value!r}: a prompt file must be one of {sorted(FORMATS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"data split must be 'train' or 'test', got {split!r}")


def _as_row(row: dict[str, Any], prompt_key: str, where: str) -> dict[str, Any]:
    """The row with its prompt text under "prompt": its `prompt_key` column, or a single user turn of `messages`."""
    if prompt_key in row and isinstance(row[prompt_key], str):
        prompt = row.pop(prompt_key)
    elif "messages" in row:
        turns = row.pop("messages") or []
        if len(turns) != 1 or turns[0].get("role") != "user":
            raise ValueError(
                f"data: {where}: `messages` must hold one user turn (a system prompt is model.system_prompt), "
                f"got roles {[t.get('role') for t in turns]}"
            )
        prompt = turns[0]["content"]
    else:
        raise ValueError(f"data: {where} has no {prompt_key!r} column (data.prompt_key) and no `messages`")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"data: {where} has an empty prompt")
    return {"prompt": prompt, **row}


def _extras_by_prompt(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """prompt -> its row's other columns; the same prompt with other columns is ambiguous for a reward."""
    extras: dict[str, dict[str, Any]] = {}
    for row in rows:
        columns = {k: v for k, v in row.items() if k != "prompt"}
        if extras.setdefault(row["prompt"], columns) != columns:
            raise ValueError(
                f"data: the prompt {row['prompt'][:60]!r} appears twice with different columns; a reward could not "
                "tell which row it answers: make the prompts unique"
            )
    return extras
