"""Prompt sources for the diffusion experiments: split "train" = in-domain, "test" = out-of-domain."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from raft.data.preference_pairs import read_lines

ASSETS = Path(__file__).resolve().parent / "assets"
SPLITS = ("train", "test")


class _PromptLists:
    chat = False  # plain text prompts, no chat template

    def __init__(self, train: list[str], test: list[str], repeats: int):
        if repeats < 1:
            raise ValueError(f"data.repeats must be >= 1, got {repeats}")
        if not train:
            raise ValueError("data has no in-domain (train) prompts")
        # Repeating a prompt gives it several independent best-of-K draws per iteration (prompts are keyed
        # by index, so equal texts stay separate): a larger batch b without inventing prompts.
        self._splits = {"train": train * repeats, "test": test}

    def prompts(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"data split must be 'train' or 'test', got {split!r}")
        return list(self._splits[split])

    def references(self, split: str) -> None:
        return None  # images have no reference texts (no perplexity)


class DigitPrompts(_PromptLists):
    """'digit 0'..'digit 9', split into in-domain digits (RAFT trains on them) and held-out digits."""

    def __init__(
        self,
        in_domain: Sequence[int] = (0, 1, 2, 3, 4),
        out_of_domain: Sequence[int] = (5, 6, 7, 8, 9),
        repeats: int = 1,
    ):
        for d in list(in_domain) + list(out_of_domain):
            if not 0 <= int(d) <= 9:
                raise ValueError(f"data digits must be 0-9, got {d}")
        super().__init__([f"digit {d}" for d in in_domain], [f"digit {d}" for d in out_of_domain], repeats)


class ClassNamePrompts(_PromptLists):
    """Class names from text files, one per line (default: CIFAR-10 in-domain, CIFAR-100 out-of-domain).

    A bare file name is looked up in raft/assets when it is not a path that exists."""

    def __init__(
        self,
        train_file: str = "cifar10_classes.txt",
        test_file: str = "cifar100_classes.txt",
        template: str = "{}",
        repeats: int = 1,
    ):
        if "{}" not in template:
            raise ValueError(f"data.template must contain '{{}}' for the class name, got {template!r}")
        lists = []
        for field, name in (("train_file", train_file), ("test_file", test_file)):
            path = Path(name).expanduser()
            if not path.is_file() and (ASSETS / name).is_file():
                path = ASSETS / name  # a bare name refers to a list shipped in raft/assets
            if not path.is_file():
                raise ValueError(f"data.{field}={name!r} does not exist")
            lists.append([template.format(line) for line in read_lines(path, f"data.{field}")])
        super().__init__(lists[0], lists[1], repeats)
