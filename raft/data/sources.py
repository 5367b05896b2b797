"""Data sources the `data` config group builds: prompts for sampling, references and preference pairs.

Constructors validate, and read local files at once (a broken file fails before any model loads); hub
datasets are read on first use. What is read is cached.
"""

from __future__ import annotations

import random
from pathlib import Path

from raft.data.preference_pairs import LoadReport, Pair, is_hub_id, load_pairs, read_lines, split_pairs

SPLITS = ("train", "test")
EVERYDAY_PROMPTS = Path(__file__).resolve().parent / "assets" / "everyday_prompts.txt"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"data split must be 'train' or 'test', got {split!r}")


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"data.{name} must be >= 0 or null, got {value}")


class EverydayPrompts:
    """Short everyday user requests shipped with raft; the policy wraps them in its chat template."""

    chat = True

    def __init__(self, n_test: int = 50, seed: int = 0, limit: int | None = None, path: str | None = None):
        if n_test < 0:
            raise ValueError(f"data.n_test must be >= 0, got {n_test}")
        _check_cap("limit", limit)
        self.n_test, self.seed, self.limit = n_test, seed, limit
        self.path = Path(path) if path else None
        if self.path is not None and not self.path.is_file():
            raise ValueError(f"data.path={path!r} does not exist")
        self._splits: dict[str, list[str]] | None = None
        self._load()

    def _read(self) -> list[str]:
        return read_lines(self.path or EVERYDAY_PROMPTS, "data.path")

    def _load(self) -> dict[str, list[str]]:
        if self._splits is None:
            prompts = self._read()
            if self.n_test >= len(prompts):
                raise ValueError(f"data.n_test={self.n_test} leaves no training prompts out of {len(prompts)}")
            order = list(range(len(prompts)))
            random.Random(self.seed).shuffle(order)
            test = [prompts[i] for i in sorted(order[: self.n_test])]
            train = [prompts[i] for i in sorted(order[self.n_test :])]
            self._splits = {"train": train[: self.limit] if self.limit is not None else train, "test": test}
        return self._splits

    def prompts(self, split: str) -> list[str]:
        _check_split(split)
        return list(self._load()[split])

    def references(self, split: str) -> list[str] | None:
        _check_split(split)
        return None  # prompts only: no reference responses for perplexity

    def pairs(self, split: str) -> list[Pair]:
        raise ValueError("data=everyday has prompts only, no preference pairs; use data=hh_rlhf for pairs")


class PreferencePairs:
    """HH-RLHF-style pairs from a local JSON-lines file or a hub dataset id. Prompts are raw dialogue text."""

    chat = False

    def __init__(
        self,
        path: str,
        test_fraction: float = 0.2,
        seed: int = 0,
        max_train: int | None = None,
        max_test: int | None = None,
        max_prompt_chars: int | None = None,
        hub_split: str = "train",
        test_path: str | None = None,
        test_hub_split: str = "test",
    ):
        path = str(path)
        for key, value in (("path", path), ("test_path", test_path)):
            if value is not None and not is_hub_id(str(value)) and not Path(str(value)).expanduser().is_file():
                raise ValueError(f"data.{key}={str(value)!r} does not exist")
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
        _check_cap("max_train", max_train)
        _check_cap("max_test", max_test)
        if max_prompt_chars is not None and max_prompt_chars <= 0:
            raise ValueError(f"data.max_prompt_chars must be > 0 or null, got {max_prompt_chars}")
        self.path, self.test_fraction, self.seed = path, test_fraction, seed
        self.max_train, self.max_test, self.max_prompt_chars = max_train, max_test, max_prompt_chars
        # A dataset's own test split (Dahoas/full-hh-rlhf has one): then all of `path` trains and the test
        # pairs come from here; test_fraction applies only without it.
        self.hub_split, self.test_path, self.test_hub_split = hub_split, test_path, test_hub_split
        self.report = LoadReport()
        self._splits: dict[str, list[Pair]] | None = None
        if not is_hub_id(path) and (test_path is None or not is_hub_id(str(test_path))):
            self._load()

    def _load(self) -> dict[str, list[Pair]]:
        if self._splits is None:
            self.report = LoadReport()
            pairs = load_pairs(self.path, self.hub_split, self.report)
            if self.test_path is None:
                self._splits = split_pairs(
                    pairs, self.test_fraction, self.seed, self.max_train, self.max_test, self.max_prompt_chars
                )
            else:
                test = load_pairs(str(self.test_path), self.test_hub_split, self.report)
                self._splits = {
                    "train": split_pairs(pairs, 0.0, self.seed, self.max_train, None, self.max_prompt_chars)["train"],
                    "test": split_pairs(test, 1.0, self.seed, None, self.max_test, self.max_prompt_chars)["test"],
                }
        return self._splits

    def pairs(self, split: str) -> list[Pair]:
        _check_split(split)
        return list(self._load()[split])

    def prompts(self, split: str) -> list[str]:
        return [p.prompt for p in self.pairs(split)]

    def references(self, split: str) -> list[str] | None:
        return [p.chosen for p in self.pairs(split)]
