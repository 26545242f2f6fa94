"""The report's "Stability" section: how the 95% intervals were computed, the noisy configurations
(coefficient of variation ≥ `CV_LIMIT_PCT`), and the runner's stability warnings found in the rows.

The warnings are grouped by their kind, as `harness.warnings.decode_warnings` reads a row's `warnings` cell
(the kind written with it, or for an older row's free text the kind its sentence names).
"""

from __future__ import annotations

import pandas as pd

from harness.analysis.markdown import markdown_table
from harness.analysis.stats import join_warnings
from harness.warnings import decode_warnings

CV_LIMIT_PCT = 10.0
CONFIG = ["sweep_label", "model", "engine", "tool", "config_key", "test"]


def _config_view(frame: pd.DataFrame, many_models: bool) -> pd.DataFrame:
    cols = ["engine", *(["model"] if many_models else []), "tool", "config_key", "test"]
    return frame[cols].rename(columns={"config_key": "configuration"})


def _span(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}–{high}"


def method_lines(table: pd.DataFrame) -> list[str]:
    total = len(table)
    procs = table[table["unit"] == "processes"]
    reps = table[(table["unit"] == "repetitions") & (table["n"] >= 2)]
    single = table[table["n"] < 2]
    lines = []
    if len(procs):
        lines.append(f"- Intervals over **processes** for {len(procs)} of {total} configuration × test rows "
                     f"({_span(procs['n'])} processes each; one sample per process: the mean of its repetitions).")
    if len(reps):
        lines.append(f"- Intervals over the **repetitions** of a single process for {len(reps)} of {total} "
                     "configuration × test rows "
                     f"({_span(reps['n'])} repetitions each; repetitions share one process's state, so these "
                     "intervals can understate the run-to-run noise).")
    if len(single):
        lines.append(f"- A single sample, so no interval, for {len(single)} of {total}.")
    return lines


def cv_lines(table: pd.DataFrame, many_models: bool, limit: int = 15) -> list[str]:
    noisy = table[table["cv_pct"] >= CV_LIMIT_PCT].sort_values("cv_pct", ascending=False)
    known = int(table["cv_pct"].notna().sum())
    if noisy.empty:
        return [f"- No configuration has a coefficient of variation (stdev / mean of its samples) of "
                f"{CV_LIMIT_PCT:g}% or more ({known} with two or more samples)."]
    lines = [f"- Coefficient of variation (stdev / mean of the samples above) ≥ {CV_LIMIT_PCT:g}% for "
             f"{len(noisy)} of {known} configuration × test rows" + (f"; the {limit} noisiest:" if len(noisy) > limit
                                                                     else ":"), ""]
    view = _config_view(noisy.head(limit), many_models)
    view["unit"], view["n"], view["CV %"] = noisy["unit"].values[:limit], noisy["n"].values[:limit], \
        noisy["cv_pct"].values[:limit]
    return lines + [markdown_table(view, 1), ""]


def warning_lines(df: pd.DataFrame, many_models: bool, worst: int = 5) -> list[str]:
    decoded = df["warnings"].map(decode_warnings) if "warnings" in df else pd.Series([[]] * len(df), index=df.index)
    rows = df[decoded.map(bool)]
    if rows.empty:
        return ["- No stability warnings in the rows."]
    decoded = decoded[rows.index]
    kinds: dict[str, dict] = {}
    for (_, row), found in zip(rows.iterrows(), decoded):
        for kind in dict.fromkeys(w.kind for w in found):
            entry = kinds.setdefault(kind, {"rows": 0, "configs": set(), "example": None})
            entry["rows"] += 1
            entry["configs"].add(tuple(row[c] for c in CONFIG))
            entry["example"] = entry["example"] or next(w.message for w in found if w.kind == kind)
    ordered = sorted(kinds.items(), key=lambda kv: -kv[1]["rows"])
    per_kind = pd.DataFrame([{"warning": k, "rows": v["rows"], "configurations": len(v["configs"]),
                              "example": v["example"]} for k, v in ordered])
    lines = [f"- Stability warnings in {len(rows)} of {len(df)} rows (the runner's checks, per process):", "",
             markdown_table(per_kind), ""]
    counted = rows.assign(count=decoded.map(len))
    grouped = counted.groupby(CONFIG, sort=False, dropna=False).agg(
        count=("count", "sum"), rows=("count", "size"), warnings=("warnings", join_warnings)).reset_index()
    grouped = grouped.sort_values(["count", "rows"], ascending=False, kind="stable").head(worst)
    view = _config_view(grouped, many_models)
    view["rows with warnings"], view["warnings"] = grouped["rows"].values, grouped["count"].values
    view["which"] = grouped["warnings"].str.slice(0, 160).values
    lines += [f"Worst configurations (most warnings, up to {worst}):", "", markdown_table(view), ""]
    return lines


def stability_section(df: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The markdown lines of the section, its heading included."""
    lines = ["## Stability", ""]
    if table.empty:
        lines.append("No successful measurement: no interval.")
    else:
        many_models = table["model"].nunique() > 1
        lines += method_lines(table) + cv_lines(table, many_models)
    lines += warning_lines(df, df["model"].nunique() > 1 if "model" in df else False)
    while lines[-1] == "":
        lines.pop()
    return lines
