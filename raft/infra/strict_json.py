"""JSON that strict readers accept (browsers, `jq`, most languages' parsers): a non-finite number (a metric not
measured, a diverged loss) is written as null, and read back as NaN where raft expects numbers."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN / ±Infinity inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any, **json_args: Any) -> str:
    return json.dumps(finite_or_none(value), allow_nan=False, **json_args)


def loads_numbers(text: str) -> Any:
    """A file of metrics: null (a non-finite number) as NaN, so comparisons and formatting work as before."""
    return json.loads(text, object_pairs_hook=lambda pairs: {k: math.nan if v is None else v for k, v in pairs})
