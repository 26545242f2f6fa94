"""Which configurations a report shows when a sweep has hundreds: the fastest ones and the baselines.

- `top_configurations(table, n)`: per (sweep, model, engine, tool) and headline test (`headline_test`: pp and
  tg), the `n` fastest rows of a `summarize` table.
- `chart_configurations(group, n)`: the configurations one chart panel of a (sweep, model, engine, tool) shows:
  the `n` best by the balanced score (the geometric mean of pp and tg, each divided by the best of its kind;
  one kind alone when only one was measured), the best for pp and for tg, and the best configuration of each
  baseline strategy present (`BASELINES`: all-gpu, cpu-moe, engine-fit), ordered by that score, best first.
- `highlights(table, best)`: the few configurations worth a placement map or a telemetry timeline: the winners
  of `best_strategies` (pp, tg, balanced) and the best of each baseline strategy.
"""

from __future__ import annotations

import pandas as pd

from harness.analysis.stats import headline_test
from harness.balanced_score import balanced_score

BASELINES = ("all-gpu", "cpu-moe", "engine-fit")
SCOPE = ["sweep_label", "model", "engine", "tool"]
TOP_N = 20
CHART_N = 30


def top_configurations(table: pd.DataFrame, n: int = TOP_N) -> pd.DataFrame:
    """The `n` fastest rows per (sweep, model, engine, tool) and headline test, fastest first."""
    parts = []
    for _, group in table.groupby(SCOPE, sort=True, dropna=False):
        for kind in ("pp", "tg"):
            test = headline_test(group, kind)
            if test:
                rows = group[group["test"] == test]
                parts.append(rows.sort_values(["tps_mean", "config_key"], ascending=[False, True]).head(n))
    return pd.concat(parts, ignore_index=True) if parts else table.iloc[0:0]


def scores(group: pd.DataFrame) -> pd.DataFrame:
    """Per config_key of one (sweep, model, engine, tool): its `pp` and `tg` tokens/s at the headline tests and
    `score`, the balanced score (see the module docstring), sorted best first."""
    frame = pd.DataFrame(index=pd.Index(sorted(set(group["config_key"])), name="config_key"))
    parts = []
    for kind in ("pp", "tg"):
        test = headline_test(group, kind)
        if test:
            values = group[group["test"] == test].groupby("config_key")["tps_mean"].max()
            frame[kind] = values
            parts.append((values.reindex(frame.index), values.max()))
    if not parts:
        frame["score"] = float("nan")
    elif len(parts) == 1:
        frame["score"] = parts[0][0] / parts[0][1]
    else:
        (pp, best_pp), (tg, best_tg) = parts
        frame["score"] = balanced_score(pp, tg, best_pp, best_tg)
    strategy = group.drop_duplicates("config_key").set_index("config_key")["strategy"]
    frame["strategy"] = strategy.reindex(frame.index)
    return frame.sort_values(["score"], ascending=False, kind="stable", na_position="last")


def baseline_best(ranked: pd.DataFrame) -> list[str]:
    """The best-scored configuration of each baseline strategy in `scores`' frame."""
    out = []
    for name in BASELINES:
        rows = ranked[ranked["strategy"] == name]
        if len(rows):
            out.append(rows.index[0])
    return out


def chart_configurations(group: pd.DataFrame, n: int = CHART_N) -> list[str]:
    """The config_keys one chart panel shows (see the module docstring), best first."""
    ranked = scores(group)
    keep = set(ranked.index[:n]) | set(baseline_best(ranked))
    for kind in ("pp", "tg"):
        if kind in ranked and ranked[kind].notna().any():
            keep.add(ranked[kind].idxmax())
    return [key for key in ranked.index if key in keep]


def highlights(table: pd.DataFrame, best: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of `table` (one per configuration: its first row) for the `best_strategies` winners and each
    scope's best baseline configurations, with a `why` column ("best for tg", "baseline cpu-moe")."""
    picked: dict[tuple, str] = {}
    if best is not None and len(best):
        for _, row in best.iterrows():
            picked.setdefault((*(row[c] for c in SCOPE), row["best"]), f"best for {row['criterion']}")
    for scope, group in table.groupby(SCOPE, sort=True, dropna=False):
        for key in baseline_best(scores(group)):
            strategy = group.loc[group["config_key"] == key, "strategy"].iat[0]
            picked.setdefault((*scope, key), f"baseline {strategy}")
    if not picked:
        return table.iloc[0:0].assign(why="")
    firsts = table.drop_duplicates([*SCOPE, "config_key"]).set_index([*SCOPE, "config_key"])
    keys = [k for k in picked if k in firsts.index]
    out = firsts.loc[keys].reset_index()
    out["why"] = [picked[k] for k in keys]
    return out
