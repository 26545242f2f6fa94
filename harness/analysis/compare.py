"""`moebench compare`: the same configurations across results folders, with ratios and their 95% intervals.

Rows are keyed by `KEYS` (model, engine, tool, strategy, strategy_params, placement, the engine knobs, test): a
configuration of one folder meets the same configuration (knob values included) of another, and a two-engine
(or two-model) sweep keeps one row per engine (and model). Each folder's mean and samples follow `summarize`'s
rule (one sample per process when there are two or more processes, else the repetitions of the single process).

For each later folder against the first, the ratio later / first of the means and its 95% interval: the delta
method on the log ratio with Welch–Satterthwaite degrees of freedom (`harness.intervals.
ratio_interval`). No interval when either side has a single sample.

`regressions(frame, pct)` is the regression gate: rows whose ratio is below 1 − pct/100 *and* whose interval
lies entirely below 1, i.e. slower by more than pct and slower beyond noise (a row without an interval never
fails it). `moebench compare --fail-if-slower PCT` exits 1 when there is one.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.intervals import ratio_interval
from harness.analysis.knobs import KNOBS
from harness.analysis.load import load_results
from harness.analysis.markdown import fmt, markdown_table
from harness.analysis.stats import summarize

KEYS = ["model", "engine", "tool", "strategy", "strategy_params", "placement", *KNOBS, "test"]
REGRESSION_COLUMNS = [*KEYS, "config_key", "folder", "base", "ratio", "ci_low", "ci_high"]


def ratio_columns(label: str, base: str) -> tuple[str, str, str]:
    """The names of a later folder's ratio columns: `<label>/<base>`, then its `low` and `high` bounds."""
    name = f"{label}/{base}"
    return name, f"{name} low", f"{name} high"


def compare(folders) -> pd.DataFrame:
    """One row per `KEYS` found in any folder: `KEYS`, `config_key`, each folder's mean tokens/s (column
    `<label>`, NaN where not measured ok), and per later folder its ratio to the first (`<label>/<first>`)
    with the 95% interval (`<label>/<first> low`, `... high`). `frame.attrs` holds `labels`, `base` and
    `ratios` (a list of (label, ratio column, low column, high column))."""
    df = load_results(folders)
    table = summarize(df)
    labels = list(dict.fromkeys(df["sweep_label"]))
    base = labels[0]
    ratios = [(label, *ratio_columns(label, base)) for label in labels[1:]]
    columns = [*KEYS, "config_key", *labels, *[c for r in ratios for c in r[1:]]]
    if table.empty:
        frame = pd.DataFrame(columns=columns)
    else:
        stats = {label: {tuple(r[k] for k in KEYS): r for r in part.to_dict("records")}
                 for label, part in table.groupby("sweep_label", sort=False)}
        keys = table.drop_duplicates(KEYS).sort_values(["model", "engine", "tool", "test", "config_key"])
        rows = []
        for _, key_row in keys.iterrows():
            key = tuple(key_row[k] for k in KEYS)
            row = {**dict(zip(KEYS, key)), "config_key": key_row["config_key"]}
            found = {label: part[key] for label, part in stats.items() if key in part}
            for label in labels:
                row[label] = float(found[label]["tps_mean"]) if label in found else math.nan
            first = found.get(base)
            for label, name, low, high in ratios:
                other = found.get(label)
                if first is None or other is None:
                    row[name] = row[low] = row[high] = math.nan
                    continue
                row[name], row[low], row[high], _ = ratio_interval(
                    first["tps_mean"], first["stdev"], first["n"], other["tps_mean"], other["stdev"], other["n"])
            rows.append(row)
        frame = pd.DataFrame(rows, columns=columns)
    frame.attrs.update(labels=labels, base=base, ratios=ratios)
    return frame


def regressions(frame: pd.DataFrame, pct: float) -> pd.DataFrame:
    """The rows of a `compare` frame slower than 1 − pct/100 beyond noise (see the module docstring), one row
    per (configuration, later folder): `REGRESSION_COLUMNS`."""
    threshold = 1 - float(pct) / 100
    out = []
    for label, name, low, high in frame.attrs.get("ratios", []):
        bad = frame[(frame[name] < threshold) & (frame[high] < 1)]
        for _, row in bad.iterrows():
            out.append({**{k: row[k] for k in [*KEYS, "config_key"]}, "folder": label,
                        "base": frame.attrs["base"], "ratio": row[name], "ci_low": row[low], "ci_high": row[high]})
    return pd.DataFrame(out, columns=REGRESSION_COLUMNS)


def render_compare(frame: pd.DataFrame, df_engines: dict[str, str] | None = None) -> str:
    """The comparison as markdown: per folder the mean tokens/s, per later folder `ratio [low, high]`."""
    lines = ["# moebench compare", ""]
    for label, engine in (df_engines or {}).items():
        lines.append(f"- **{label}:** {engine}")
    labels = frame.attrs.get("labels") or []
    ratios = frame.attrs.get("ratios") or []
    view = frame[[c for c in ("model", "engine", "tool", "config_key", "test") if c in frame]].copy()
    if "model" in view and view["model"].nunique() <= 1:
        view = view.drop(columns="model")
    view = view.rename(columns={"config_key": "configuration"})
    for label in labels:
        view[label] = frame[label]
    for _, name, low, high in ratios:
        view[name] = [f"{fmt(r, 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]" if not math.isnan(lo) else fmt(r, 3)
                      for r, lo, hi in zip(frame[name], frame[low], frame[high])]
    lines += ["", "Tokens/s (mean) per folder, and the ratio to the first folder with its 95% interval "
                  "[low, high] (delta method on the log ratio, Welch–Satterthwaite degrees of freedom; samples: "
                  "one per process with two or more processes, else the repetitions; no interval from a single "
                  "sample).", "", markdown_table(view, 2)]
    return "\n".join(lines) + "\n"
