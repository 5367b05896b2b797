"""`reward=function`: a plain Python function as the reward, as TRL takes reward functions.

`reward.fn` names it as `package.module:function` (importable from the current folder too) or
`path/to/file.py:function`. It is called as `fn(prompts=[...], completions=[...], **columns)`, where `columns`
are the extra columns of the data rows the prompts came from (`data=prompts`), one list per column, and returns
one number per completion. An error inside it is raised as it is, with its own traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from raft.rewards.base import Reward


class FunctionReward(Reward):
    def __init__(self, fn: str, data: Any = None, batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        self.fn_name, self.data, self.batch_size = fn, data, batch_size
        self.fn = load_function(fn)
        check_columns(self.fn, fn, data)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        columns: dict[str, list[Any]] = {}
        if self.data is not None and hasattr(self.data, "extras"):
            rows = [self.data.extras(p) for p in prompts]
            columns = {key: [row.get(key) for row in rows] for key in dict.fromkeys(k for r in rows for k in r)}
        return list(self.fn(prompts=list(prompts), completions=list(responses), **columns))


def load_function(spec: str) -> Callable:
    """The function `spec` names: `module.path:name` or `file.py:name`; one-line errors say what is wrong."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"reward.fn must be 'module:function' or 'file.py:function', got {spec!r}")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ValueError(f"reward.fn={spec!r}: {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:  # `raft` is a console script: the user's folder is not on the path
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as error:
            raise ValueError(f"reward.fn={spec!r}: cannot import {target!r} ({error})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"reward.fn={spec!r}: {target} has no function {name!r}")
    parameters = inspect.signature(fn).parameters
    takes = {"prompts", "completions"} <= set(parameters) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    if not takes:
        raise ValueError(f"reward.fn={spec!r} must take prompts= and completions= (and **columns), as TRL's do")
    return fn


def check_columns(fn: Callable, spec: str, data: Any) -> None:
    """A function that needs columns the data does not have is refused now, before any model loads."""
    needed = [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if name not in ("prompts", "completions")
        and p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if not needed or data is None or getattr(data, "_splits", True) is None:
        return  # nothing asked for, or a hub dataset not read yet: its rows are checked when they are scored
    have = data.columns() if hasattr(data, "columns") else set()
    missing = [name for name in needed if name not in have]
    if missing:
        raise ValueError(
            f"reward.fn={spec!r} needs the column(s) {missing}, which the data's rows do not have "
            f"(they have {sorted(have) or 'none'}): use data=prompts with a file that has them"
        )
