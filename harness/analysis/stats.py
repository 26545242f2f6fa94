"""Statistics over a loaded results frame (`harness.analysis.load`).

`summarize`: one row per (sweep, engine, tool, placement, test) with the mean tokens/s and its 95% confidence
interval from the repetitions' samples (Student's t; a single sample has no interval: ci_low/ci_high are NaN,
and `n` says 1). Only rows with status "ok" are measured; `status_counts` counts the rest.

`best_strategies`: per (sweep, engine, tool) the best placement for prompt processing (pp), for generation (tg)
and a balanced one (the geometric mean of pp and tg, each normalized to the best of its kind), with the
runner-up and whether the lead is beyond noise: the winner's 95% interval lies entirely above the runner-up's
(for balanced: the winner's score from its lower bounds beats the runner-up's from its upper bounds). With a
single sample there is no interval, so a lead is never called beyond noise.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

# two-sided 95% critical values of Student's t, by degrees of freedom (1..30); beyond that, the normal 1.96
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045, 30: 2.042,
}

GROUP = ["sweep_label", "engine", "tool", "placement", "test"]


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    if df < 1:
        return math.nan
    if df in _T95:
        return _T95[df]
    if df <= 40:
        return 2.021
    if df <= 60:
        return 2.000
    if df <= 120:
        return 1.980
    return 1.960


def confidence_interval(samples) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) at 95%; the bounds are NaN for fewer than two samples."""
    values = [float(v) for v in samples if v is not None and not math.isnan(float(v))]
    if not values:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_critical(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean tokens/s and 95% CI per (sweep, engine, tool, placement, test), ok rows only, sorted by sweep,
    engine, tool, test, then mean descending."""
    ok = df[df["ok"]]
    rows = []
    for key, group in ok.groupby(GROUP, sort=False, dropna=False):
        samples = [s for cell in group["samples"] for s in cell]
        if not samples:  # no per-repetition samples: the row's own mean, without an interval
            samples = [float(v) for v in group["tps_mean"].dropna()]
        mean, low, high = confidence_interval(samples)
        first = group.iloc[0]
        rows.append({
            **dict(zip(GROUP, key)), "strategy": first["strategy"], "param_value": first.get("param_value"),
            "strategy_params": first.get("strategy_params"), "kind": first["kind"], "size": first["size"],
            "depth": first["depth"], "concurrency": first["concurrency"], "n": len(samples),
            "tps_mean": mean, "ci_low": low, "ci_high": high,
            "ttft_ms_mean": _mean(group.get("ttft_ms_mean")),
            "predicted_vram_mib": _mean(group.get("predicted_vram_bytes")) / 2**20,
            "vram_peak_mib": _mean(group.get("vram_peak_mib")),
            "pcie_mib_per_token": _mean(group.get("pcie_mib_per_token")),
            "loopback_mib_per_token": _mean(group.get("loopback_mib_per_token")),
            "joules_per_token": _mean(group.get("joules_per_token")),
        })
    out = pd.DataFrame(rows, columns=[*GROUP, "strategy", "param_value", "strategy_params", "kind", "size", "depth",
                                      "concurrency", "n", "tps_mean", "ci_low", "ci_high", "ttft_ms_mean",
                                      "predicted_vram_mib", "vram_peak_mib", "pcie_mib_per_token",
                                      "loopback_mib_per_token", "joules_per_token"])
    if out.empty:
        return out
    return out.sort_values(["sweep_label", "engine", "tool", "test", "tps_mean"],
                           ascending=[True, True, True, True, False], kind="stable").reset_index(drop=True)


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


def _beyond(w_low, r_high) -> bool:
    return bool(not math.isnan(w_low) and not math.isnan(r_high) and w_low > r_high)


def best_strategies(table: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, engine, tool) and criterion (pp, tg, balanced): the best placement, its value and 95% CI,
    the runner-up, and `beyond_noise` (see the module docstring). Columns: sweep_label, engine, tool,
    criterion, test, best, strategy, value, ci_low, ci_high, runner_up, runner_up_value, runner_up_ci_low,
    runner_up_ci_high, beyond_noise, verdict, candidates."""
    rows = []
    if table.empty:
        return pd.DataFrame(rows)
    for (sweep, engine, tool), group in table.groupby(["sweep_label", "engine", "tool"], sort=True):
        base = {"sweep_label": sweep, "engine": engine, "tool": tool}
        per_kind = {}
        for kind in ("pp", "tg"):
            test = headline_test(group, kind)
            if test is None:
                continue
            ranked = group[group["test"] == test].sort_values("tps_mean", ascending=False)
            per_kind[kind] = ranked.set_index("placement")
            rows.append(_verdict(base, kind, test, ranked, "tps_mean", "ci_low", "ci_high"))
        if len(per_kind) == 2:
            pp, tg = per_kind["pp"], per_kind["tg"]
            both = pp.index.intersection(tg.index)
            if len(both):
                best_pp, best_tg = pp.loc[both, "tps_mean"].max(), tg.loc[both, "tps_mean"].max()

                def score(pp_col, tg_col):
                    ratio = (pp.loc[both, pp_col] / best_pp).clip(lower=0) * (tg.loc[both, tg_col] / best_tg).clip(lower=0)
                    return ratio ** 0.5

                scores = pd.DataFrame({"placement": both, "tps_mean": score("tps_mean", "tps_mean").values,
                                       "ci_low": score("ci_low", "ci_low").values,
                                       "ci_high": score("ci_high", "ci_high").values,
                                       "strategy": pp.loc[both, "strategy"].values,
                                       "n": pp.loc[both, "n"].values})
                ranked = scores.sort_values("tps_mean", ascending=False)
                test = f"{pp.iloc[0]['test']}+{tg.iloc[0]['test']}"
                rows.append(_verdict(base, "balanced", test, ranked, "tps_mean", "ci_low", "ci_high"))
    return pd.DataFrame(rows)


def _verdict(base: dict, criterion: str, test: str, ranked: pd.DataFrame, value: str, low: str, high: str) -> dict:
    win = ranked.iloc[0]
    row = {**base, "criterion": criterion, "test": test, "best": win["placement"], "strategy": win["strategy"],
           "value": float(win[value]), "ci_low": float(win[low]), "ci_high": float(win[high]),
           "runner_up": None, "runner_up_value": math.nan, "runner_up_ci_low": math.nan,
           "runner_up_ci_high": math.nan, "beyond_noise": False, "candidates": len(ranked)}
    if len(ranked) < 2:
        row["verdict"] = "only candidate"
        return row
    run = ranked.iloc[1]
    row.update(runner_up=run["placement"], runner_up_value=float(run[value]), runner_up_ci_low=float(run[low]),
               runner_up_ci_high=float(run[high]))
    row["beyond_noise"] = _beyond(row["ci_low"], row["runner_up_ci_high"])
    if math.isnan(row["ci_low"]) or math.isnan(row["runner_up_ci_high"]):
        row["verdict"] = "no confidence interval (a single repetition): lead not tested"
    elif row["beyond_noise"]:
        row["verdict"] = f"beyond noise (95% CIs do not overlap with {run['placement']})"
    else:
        row["verdict"] = f"within noise (95% CIs overlap with {run['placement']})"
    return row
