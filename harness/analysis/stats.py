"""Statistics over a loaded results frame (`harness.analysis.load`): one row per configuration and test.

`summarize`: one row per (sweep, model, engine, tool, strategy, strategy_params, placement, engine knobs, test),
the configuration's identity (`GROUP`; `config_key` names it; two values of a knob are never pooled), with the
mean tokens/s and its 95% Student's t interval (`harness.intervals`, computed for all groups at once by
`interval_frame`). Only rows with status "ok" are measured; `status_counts` counts the rest.

The samples of the interval (`harness.intervals.replication_samples`, the one rule; the unit of replication,
pyperf's lesson: repetitions inside one process share its memory layout, caches and frequency, so they
understate the spread between runs):

- 2 or more ok rows (processes, schema 2): one sample per process, that row's `tps_mean` (the mean of its
  repetitions; the mean of its `tps_samples` when `tps_mean` is empty); `unit` "processes", `n` = processes;
- exactly 1 ok row (schema 1, or a single process): its repetitions (`tps_samples`), or its `tps_mean` alone
  when it has none; `unit` "repetitions". A single sample has no interval: ci_low/ci_high NaN, `n` 1.

`cv_pct` is stdev / mean × 100 of those same samples, `stdev` their standard deviation, and `warnings` the
distinct stability warnings' sentences of the group's rows, joined by "; ".
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd

from harness.analysis.knobs import KNOBS
from harness.analysis.load import parse_samples
from harness.intervals import Interval, interval, log_half_width, replication_samples, t_quantiles
from harness.units import MIB
from harness.warnings import decode_warnings

GROUP = ["sweep_label", "model", "engine", "tool", "strategy", "strategy_params", "placement", *KNOBS, "test"]

TABLE_COLUMNS = [
    "sweep_label", "model", "engine", "tool", "config_key", "strategy", "strategy_params", "placement", *KNOBS,
    "knobs", "test", "param_value", "kind", "size", "depth", "concurrency", "unit", "processes", "n", "tps_mean",
    "stdev", "cv_pct", "ci_low", "ci_high", "warnings", "ttft_ms_mean", "predicted_vram_mib", "vram_peak_mib",
    "pcie_mib_per_token", "loopback_mib_per_token", "joules_per_token",
]


def join_warnings(cells) -> str:
    """The distinct warnings' sentences of some rows' `warnings` cells (`harness.warnings.decode_warnings`), in
    order of appearance, joined by "; "."""
    seen: dict[str, None] = {}
    for cell in cells:
        for found in decode_warnings(cell):
            seen.setdefault(found.message)
    return "; ".join(seen)


MEANS = {"ttft_ms_mean": "ttft_ms_mean", "predicted_vram_bytes": "predicted_vram_mib",
         "vram_peak_mib": "vram_peak_mib", "pcie_mib_per_token": "pcie_mib_per_token",
         "loopback_mib_per_token": "loopback_mib_per_token", "joules_per_token": "joules_per_token"}
FIRST = ["config_key", "knobs", "param_value", "kind", "size", "depth", "concurrency"]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and test (`GROUP`), ok rows only, with `TABLE_COLUMNS`; sorted by sweep,
    model, engine, tool, test, then mean descending."""
    ok = df[df["ok"]]
    ok = ok.assign(**{c: (ok[c].where(ok[c].notna(), "") if c in ok else "") for c in GROUP})
    if ok.empty:
        return pd.DataFrame([], columns=TABLE_COLUMNS)
    codes = ok.groupby(GROUP, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    members = np.split(order, starts[1:])  # row positions of each group, in the order of first appearance
    tps = pd.to_numeric(ok["tps_mean"], errors="coerce") if "tps_mean" in ok else pd.Series(np.nan, index=ok.index)
    samples = list(ok["samples"]) if "samples" in ok else [[] for _ in range(len(ok))]
    process = tps.to_numpy(dtype=float)
    for i in np.flatnonzero(np.isnan(process)):  # a row without tps_mean: the mean of its samples
        process[i] = statistics.fmean(samples[i]) if samples[i] else math.nan
    warnings = ok["warnings"].fillna("").astype(str).to_numpy() if "warnings" in ok else np.full(len(ok), "")
    units, flat, owners, texts = [], [], [], []
    for gid, pos in enumerate(members):
        unit, values = _unit_samples(pos, process, samples)
        units.append(unit)
        flat += values
        owners += [gid] * len(values)
        found = [w for w in warnings[pos] if w]
        texts.append(join_warnings(found) if found else "")
    out = interval_frame(np.asarray(owners, dtype=int), np.asarray(flat, dtype=float), len(members))
    out["unit"], out["processes"], out["warnings"] = units, [len(pos) for pos in members], texts
    firsts = ok.iloc[[pos[0] for pos in members]].reset_index(drop=True)
    for col in [*GROUP, *FIRST]:
        out[col] = firsts[col].to_numpy() if col in firsts else (firsts["placement"].to_numpy()
                                                                  if col == "config_key" else None)
    numbers = pd.DataFrame({col: pd.to_numeric(ok[col], errors="coerce") if col in ok else np.nan
                            for col in MEANS}, index=ok.index).groupby(codes).mean()
    for col, name in MEANS.items():
        out[name] = numbers[col].to_numpy() / (MIB if col == "predicted_vram_bytes" else 1)
    out = out[TABLE_COLUMNS]
    return out.sort_values(["sweep_label", "model", "engine", "tool", "test", "tps_mean"],
                           ascending=[True, True, True, True, True, False], kind="stable").reset_index(drop=True)


def interval_frame(owners: np.ndarray, values: np.ndarray, groups: int) -> pd.DataFrame:
    """Per group 0..groups-1 of the samples `values` (group `owners[i]` each): `n`, `tps_mean`, `stdev`,
    `cv_pct`, `ci_low`, `ci_high`: `harness.intervals`' confidence_interval (on the log scale, `log_half_width`),
    stdev and cv_pct, computed for all groups at once (the same Student-t, `t_quantiles`; NaN where a group has
    fewer than two samples)."""
    frame = pd.Series(values).groupby(owners).agg(["size", "mean", "std"]).reindex(range(groups))
    n = frame["size"].fillna(0).astype(int).to_numpy()
    mean, sd = frame["mean"].to_numpy(dtype=float), frame["std"].to_numpy(dtype=float)
    sd = np.where(n >= 2, sd, np.nan)
    t = t_quantiles(np.where(n >= 2, n - 1, 1).astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where((n >= 2) & (mean > 0), log_half_width(t, sd, np.maximum(n, 1), mean), np.nan)
        cv = np.where((n >= 2) & (mean != 0), sd / np.abs(mean) * 100, np.nan)
    return pd.DataFrame({"n": n, "tps_mean": mean, "stdev": sd, "cv_pct": cv, "ci_low": mean * np.exp(-half),
                         "ci_high": mean * np.exp(half)})


def _unit_samples(pos: np.ndarray, process: np.ndarray, samples: list) -> tuple[str, list[float]]:
    """(unit, samples) of one configuration's ok rows (at `pos`): `harness.intervals.replication_samples`."""
    return replication_samples(list(process[pos]), samples[pos[0]] if len(pos) == 1 else None)


def measured_interval(rows: pd.DataFrame) -> Interval:
    """The 95% interval of one configuration and test from its ok rows of a runs.csv (`tps_mean`, and
    `tps_samples` as written: a JSON list): the rule of `summarize`, for `moebench tune` and `moebench explain`,
    so that they show the report's interval."""
    means = list(pd.to_numeric(rows["tps_mean"], errors="coerce"))
    one = len(rows) == 1 and "tps_samples" in rows
    return interval(means, parse_samples(rows["tps_samples"].iloc[0]) if one else None)


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """How many rows per (sweep, engine, tool) ended ok, failed or skipped."""
    status = df["status"].where(~df["skipped"], "skipped").where(df["ok"] | df["skipped"], "failed")
    counts = df.assign(outcome=status).groupby(["sweep_label", "engine", "tool", "outcome"]).size()
    return counts.unstack("outcome", fill_value=0).reset_index()


def headline_test(table: pd.DataFrame, kind: str) -> str | None:
    """The test that stands for `kind` (pp or tg): no depth, a single request, the largest size measured."""
    candidates = table[(table["kind"] == kind) & (table["depth"] == 0) & (table["concurrency"] == 1)]
    if candidates.empty:
        candidates = table[table["kind"] == kind]
    if candidates.empty:
        return None
    return str(candidates.sort_values(["size", "test"]).iloc[-1]["test"])
