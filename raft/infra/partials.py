"""What a partial will call, and with which arguments, when partials wrap partials.

Hydra (1.3.8 on) builds a `_partial_: true` config as a subclass of functools.partial whose own `__call__` applies
its target policy, and functools.partial flattens only plain partials. A task's `functools.partial(module,
reference=...)` around it therefore nests: `.func` is Hydra's partial and `.keywords` holds only the task's.
Reading the class and the keyword arguments goes through `parts`; calling still goes through the wrappers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable


def parts(partial: Any) -> tuple[Callable[..., Any], tuple, dict[str, Any]]:
    """(the callable at the bottom, its positional arguments, its keyword arguments) of nested partials, as a call
    would combine them: inner positional arguments first, outer keywords winning."""
    chain = []
    while isinstance(partial, functools.partial):
        chain.append(partial)
        partial = partial.func
    args: tuple = ()
    keywords: dict[str, Any] = {}
    for layer in reversed(chain):
        args, keywords = args + layer.args, {**keywords, **layer.keywords}
    return partial, args, keywords
