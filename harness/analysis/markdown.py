"""Markdown for people: numbers formatted for tables (`fmt`) and GitHub tables (`markdown_table`)."""

from __future__ import annotations

import math

import pandas as pd


def fmt(value, digits: int = 1) -> str:
    """A cell: floats with thousands separators and `digits` decimals, "–" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(row[c], digits).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)
