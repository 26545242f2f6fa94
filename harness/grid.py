"""Parameter grids of bench.yaml: a value, a list of values, or a range `A..B` / `A..B step S` (inclusive)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from harness.errors import UserError

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?:step\s+(\d+))?\s*$")


def expand_values(value: Any) -> list[Any]:
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            out += expand_values(item)
        return out
    if isinstance(value, str):
        m = _RANGE.match(value)
        if m:
            start, stop, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
            if step <= 0 or stop < start:
                raise ValueError(f"range {value!r} must go up with a positive step")
            return list(range(start, stop + 1, step))
    return [value]


VECTOR_PARAMS = frozenset({"split"})
"""Parameters whose one value is a list (`split: [3, 1]`): a list of lists (or of "3,1" strings) is their axis."""


def expand_vector(value: Any) -> list[Any]:
    if isinstance(value, list) and value and all(isinstance(v, (list, tuple, str)) for v in value):
        return [list(v) if isinstance(v, (list, tuple)) else v for v in value]
    return [list(value) if isinstance(value, (list, tuple)) else value]


def expand_grid(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, in a stable order."""
    keys = list(params)
    values = [expand_vector(params[k]) if k in VECTOR_PARAMS else expand_values(params[k]) for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`n=4 parts=gate,up` from a command line into {'n': 4, 'parts': 'gate,up'}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:

            raise UserError(f"parameter {item!r} must look like name=value")
        out[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return out
