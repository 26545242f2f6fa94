"""The report's "Stability" section: how the 95% intervals were computed, the noisy configurations
(coefficient of variation ≥ `CV_LIMIT_PCT`), and the runner's stability warnings found in the rows.

The warnings are grouped by their kind, as `harness.warnings.decode_warnings` reads a row's `warnings` cell
(the kind written with it, or for an older row's free text the kind its sentence names), each kind once with
its remedy (`warning_kinds`; the run's closing summary shows the same, and per configuration each kind once:
`kinds_by_configuration`). Telemetry from few samples is a note for the sweep (`telemetry_note`), not a warning.
"""

from __future__ import annotations

import pandas as pd

from harness.analysis.markdown import markdown_table
from harness.warnings import KINDS, MIN_TELEMETRY_SAMPLES, NOTE_KINDS, REMEDIES, decode_warnings

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


def _decoded(df: pd.DataFrame) -> pd.Series:
    """Each row's warnings (`decode_warnings`), the sweep-level notes (`NOTE_KINDS`) left out."""
    if "warnings" not in df:
        return pd.Series([[]] * len(df), index=df.index, dtype=object)
    return df["warnings"].map(lambda cell: [w for w in decode_warnings(cell) if w.kind not in NOTE_KINDS])


def warning_kinds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of warning found in the rows (notes left out), most rows first: `kind`, `rows`,
    `configurations` (how many configuration × test carry it), `example` (one message), `remedy`."""
    decoded = _decoded(df)
    kinds: dict[str, dict] = {}
    for (_, row), found in zip(df.iterrows(), decoded):
        for w in {w.kind: w for w in reversed(found)}.values():
            entry = kinds.setdefault(w.kind, {"rows": 0, "configs": set(), "example": w.message,
                                              "remedy": w.remedy or REMEDIES.get(w.kind, "")})
            entry["rows"] += 1
            entry["configs"].add(tuple(row.get(c) for c in CONFIG))
    ordered = sorted(kinds.items(), key=lambda kv: -kv[1]["rows"])
    return pd.DataFrame([{"kind": k, "rows": v["rows"], "configurations": len(v["configs"]),
                          "example": v["example"], "remedy": v["remedy"]} for k, v in ordered],
                        columns=["kind", "rows", "configurations", "example", "remedy"])


def kinds_by_configuration(df: pd.DataFrame) -> dict[tuple, list[str]]:
    """Per configuration × test (the `CONFIG` columns' values) the kinds of its rows' warnings, each once, in
    the order of `KINDS` (notes left out)."""
    out: dict[tuple, dict[str, None]] = {}
    for (_, row), found in zip(df.iterrows(), _decoded(df)):
        if found:
            seen = out.setdefault(tuple(row.get(c) for c in CONFIG), {})
            for w in found:
                seen.setdefault(w.kind)
    order = {kind: i for i, kind in enumerate(KINDS)}
    return {key: sorted(kinds, key=lambda k: order.get(k, len(order))) for key, kinds in out.items()}


def telemetry_note(df: pd.DataFrame) -> str | None:
    """The sweep-level note on telemetry from few samples (`MIN_TELEMETRY_SAMPLES`): how many measured rows'
    telemetry figures are readings rather than summaries (by `telemetry_samples`, or an older row's warning of
    that kind); None when there is none."""
    ok = df[df["ok"]] if "ok" in df else df
    if ok.empty:
        return None
    few = pd.to_numeric(ok["telemetry_samples"], errors="coerce") < MIN_TELEMETRY_SAMPLES \
        if "telemetry_samples" in ok else pd.Series(False, index=ok.index)
    if "warnings" in ok:
        few |= ok["warnings"].map(lambda cell: any(w.kind in NOTE_KINDS for w in decode_warnings(cell)))
    if not few.any():
        return None
    return (f"Telemetry (VRAM, PCIe, power, CPU) of {int(few.sum())} of {len(ok)} measured rows comes from fewer "
            f"than {MIN_TELEMETRY_SAMPLES} samples (tests shorter than {MIN_TELEMETRY_SAMPLES} ticks of the sampler, 1 s "
            "at the default 10 Hz): "
            "read those figures as single readings; the tokens/s are not affected.")


def warning_lines(df: pd.DataFrame, many_models: bool, worst: int = 5) -> list[str]:
    decoded = _decoded(df)
    note = telemetry_note(df)
    rows = df[decoded.map(bool)]
    if rows.empty:
        return ["- No stability warnings in the rows."] + ([f"- {note}"] if note else [])
    per_kind = warning_kinds(df).rename(columns={"kind": "warning", "remedy": "what to do"})
    lines = [f"- Stability warnings in {len(rows)} of {len(df)} rows (the runner's checks, per process):", "",
             markdown_table(per_kind), ""]
    if note:
        lines += [f"- {note}", ""]
    decoded = decoded[rows.index]
    counted = rows.assign(count=decoded.map(len), kinds=decoded.map(lambda found: [w.kind for w in found]))
    grouped = counted.groupby(CONFIG, sort=False, dropna=False).agg(
        count=("count", "sum"), rows=("count", "size"), kinds=("kinds", _kind_counts)).reset_index()
    grouped = grouped.sort_values(["count", "rows"], ascending=False, kind="stable").head(worst)
    view = _config_view(grouped, many_models)
    view["rows with warnings"], view["warnings"] = grouped["rows"].values, grouped["count"].values
    view["which"] = grouped["kinds"].values
    lines += [f"Worst configurations (most warnings, up to {worst}):", "", markdown_table(view), ""]
    return lines


def _kind_counts(lists) -> str:
    """Each kind once, with how many times the rows carry it: "cv ×2, samples ×2"."""
    counts: dict[str, int] = {}
    for kinds in lists:
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in counts.items())


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
