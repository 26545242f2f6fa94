"""Statistics over a loaded results frame (`harness.analysis.load`): one row per configuration and test.

`summarize`: one row per (sweep, model, engine, tool, strategy, strategy_params, placement, test), the
configuration's identity (`GROUP`; `config_key` names it), with the mean tokens/s and its 95% Student's t
interval (`harness.intervals`). Only rows with status "ok" are measured; `status_counts` counts the
rest.

The samples of the interval (the unit of replication, pyperf's lesson: repetitions inside one process share
its memory layout, caches and frequency, so they understate the spread between runs):

- 2 or more ok rows (processes, schema 2): one sample per process, that row's `tps_mean` (the mean of its
  repetitions; the mean of its `tps_samples` when `tps_mean` is empty); `unit` "processes", `n` = processes;
- exactly 1 ok row (schema 1, or a single process): its repetitions (`tps_samples`), or its `tps_mean` alone
  when it has none; `unit` "repetitions". A single sample has no interval: ci_low/ci_high NaN, `n` 1.

`cv_pct` is stdev / mean × 100 of those same samples, `stdev` their standard deviation, and `warnings` the
distinct stability warnings of the group's rows, joined by "; ".
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

from harness.intervals import confidence_interval, cv_pct, stdev, t_critical

__all__ = ["GROUP", "TABLE_COLUMNS", "best_strategies", "confidence_interval", "headline_test", "pairwise_verdicts",
           "status_counts", "summarize", "t_critical", "unit_samples"]


def __getattr__(name: str):
    """`best_strategies` and `pairwise_verdicts` live in `harness.analysis.verdicts` (which imports this
    module); importing them from here still works."""
    if name in ("best_strategies", "pairwise_verdicts"):
        from harness.analysis import verdicts

        return getattr(verdicts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


GROUP = ["sweep_label", "model", "engine", "tool", "strategy", "strategy_params", "placement", "test"]

TABLE_COLUMNS = [
    "sweep_label", "model", "engine", "tool", "config_key", "strategy", "strategy_params", "placement", "test",
    "param_value", "kind", "size", "depth", "concurrency", "unit", "processes", "n", "tps_mean", "stdev",
    "cv_pct", "ci_low", "ci_high", "warnings", "ttft_ms_mean", "predicted_vram_mib", "vram_peak_mib",
    "pcie_mib_per_token", "loopback_mib_per_token", "joules_per_token",
]


def _process_mean(row) -> float:
    value = pd.to_numeric(pd.Series([row.get("tps_mean")]), errors="coerce").iat[0]
    if pd.notna(value):
        return float(value)
    samples = row.get("samples") or []
    return statistics.fmean(samples) if samples else math.nan


def unit_samples(group: pd.DataFrame) -> tuple[str, list[float]]:
    """(unit, samples) of one configuration's ok rows, by the rule in the module docstring."""
    if len(group) >= 2:
        values = [_process_mean(row) for _, row in group.iterrows()]
        return "processes", [v for v in values if not math.isnan(v)]
    if len(group) == 0:
        return "repetitions", []
    row = group.iloc[0]
    samples = list(row.get("samples") or [])
    if not samples:
        value = _process_mean(row)
        samples = [] if math.isnan(value) else [value]
    return "repetitions", samples


def join_warnings(cells) -> str:
    """The distinct warnings of some rows (each "; "-joined), in order of appearance, joined by "; "."""
    seen: dict[str, None] = {}
    for cell in cells:
        for item in str(cell or "").split(";"):
            item = item.strip()
            if item and item.lower() != "nan":
                seen.setdefault(item)
    return "; ".join(seen)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration and test (`GROUP`), ok rows only, with `TABLE_COLUMNS`; sorted by sweep,
    model, engine, tool, test, then mean descending."""
    ok = df[df["ok"]]
    for col in GROUP:
        if col not in ok:
            ok = ok.assign(**{col: ""})
    rows = []
    for key, group in ok.groupby(GROUP, sort=False, dropna=False):
        unit, samples = unit_samples(group)
        mean, low, high = confidence_interval(samples)
        first = group.iloc[0]
        rows.append({
            **dict(zip(GROUP, key)), "config_key": first.get("config_key", first["placement"]),
            "param_value": first.get("param_value"), "kind": first["kind"], "size": first["size"],
            "depth": first["depth"], "concurrency": first["concurrency"], "unit": unit, "processes": len(group),
            "n": len(samples), "tps_mean": mean, "stdev": stdev(samples), "cv_pct": cv_pct(samples),
            "ci_low": low, "ci_high": high, "warnings": join_warnings(group.get("warnings", [])),
            "ttft_ms_mean": _mean(group.get("ttft_ms_mean")),
            "predicted_vram_mib": _mean(group.get("predicted_vram_bytes")) / 2**20,
            "vram_peak_mib": _mean(group.get("vram_peak_mib")),
            "pcie_mib_per_token": _mean(group.get("pcie_mib_per_token")),
            "loopback_mib_per_token": _mean(group.get("loopback_mib_per_token")),
            "joules_per_token": _mean(group.get("joules_per_token")),
        })
    out = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if out.empty:
        return out
    return out.sort_values(["sweep_label", "model", "engine", "tool", "test", "tps_mean"],
                           ascending=[True, True, True, True, True, False], kind="stable").reset_index(drop=True)


def _mean(series) -> float:
    if series is None:
        return math.nan
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


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
