"""raft's paper metrics as Hugging Face `evaluate` modules, shipped inside the package so they load offline:

    import evaluate
    from raft.evaluation.evaluate_modules import module_path
    evaluate.load(module_path("msttr")).compute(predictions=texts)   # {"msttr_100": ...}

Each module calls raft's own function (raft/evaluation/metrics/diversity.py; raft/data/answers.py for
`exact_match`, the accuracy of the verifiable tasks), so it gives the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODULES = ("msttr", "distinct_n", "unique_n", "length", "exact_match")


def module_path(name: str) -> str:
    """The folder of module `name`, for `evaluate.load` (a local path: nothing is fetched)."""
    if name not in MODULES:
        raise ValueError(f"unknown raft evaluate module {name!r}; choose from {', '.join(MODULES)}")
    return str(Path(__file__).parent / name)


def load(name: str, **kwargs: Any) -> Any:
    import evaluate

    return evaluate.load(module_path(name), **kwargs)
