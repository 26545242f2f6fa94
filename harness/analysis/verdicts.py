"""Which configuration is faster, and whether that is beyond noise, over a `summarize` table.

"Beyond noise" has one definition (`harness.intervals.noise_verdict`): the two configurations' 95%
intervals do not overlap. A single sample has no interval, so such a lead is never called beyond noise.

`best_strategies`: per (sweep, model, engine, tool) the best configuration for prompt processing (pp), for
generation (tg) and a balanced one (`harness.balanced_score`: the geometric mean of pp and tg, each normalized
to the best of its kind; its interval is the score computed from the lower bounds and from the upper bounds),
with the runner-up and the noise verdict between the two.

`pairwise_verdicts`: every unordered pair of configurations per (sweep, model, engine, tool, test) with the
same verdict, so that two runs of a sweep can be checked for agreeing conclusions.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd

from harness.balanced_score import balanced_score
from harness.intervals import noise_verdict
from harness.analysis.stats import headline_test

SCOPE = ["sweep_label", "model", "engine", "tool"]
BEST_COLUMNS = [
    *SCOPE, "criterion", "test", "best", "strategy", "strategy_params", "placement", "knobs", "value", "ci_low",
    "ci_high", "runner_up", "runner_up_value", "runner_up_ci_low", "runner_up_ci_high", "beyond_noise", "verdict",
    "candidates",
]
PAIR_COLUMNS = [*SCOPE, "test", "a", "b", "a_mean", "b_mean", "a_ci_low", "a_ci_high", "b_ci_low", "b_ci_high",
                "verdict"]


def _scoped(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the scope columns and config_key present (older or hand-made tables lack some)."""
    missing = {c: "" for c in SCOPE if c not in table}
    if "config_key" not in table:
        missing["config_key"] = table["placement"]
    for col in ("strategy_params", "knobs"):
        if col not in table:
            missing[col] = ""
    return table.assign(**missing) if missing else table


def best_strategies(table: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, model, engine, tool) and criterion (pp, tg, balanced): the best configuration (`best`, its
    config_key, with its `strategy`, `strategy_params`, `placement` and `knobs`: every non-default engine knob,
    e.g. "ub=2048 fa=on"), its value and 95% CI, the runner-up and its value and
    CI, `beyond_noise` (the winner's interval lies entirely above the runner-up's), a readable `verdict` and
    the number of `candidates`. Columns: `BEST_COLUMNS`."""
    rows = []
    if table.empty:
        return pd.DataFrame(rows, columns=BEST_COLUMNS)
    table = _scoped(table)
    for scope, group in table.groupby(SCOPE, sort=True, dropna=False):
        base = dict(zip(SCOPE, scope))
        per_kind = {}
        for kind in ("pp", "tg"):
            test = headline_test(group, kind)
            if test is None:
                continue
            ranked = group[group["test"] == test].sort_values(["tps_mean", "config_key"], ascending=[False, True])
            per_kind[kind] = ranked.set_index("config_key")
            rows.append(_verdict(base, kind, test, ranked))
        if len(per_kind) == 2:
            balanced = _balanced(per_kind["pp"], per_kind["tg"])
            if balanced is not None:
                test = f"{per_kind['pp']['test'].iat[0]}+{per_kind['tg']['test'].iat[0]}"
                rows.append(_verdict(base, "balanced", test, balanced))
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


def _balanced(pp: pd.DataFrame, tg: pd.DataFrame) -> pd.DataFrame | None:
    both = pp.index.intersection(tg.index)
    if not len(both):
        return None
    best_pp, best_tg = pp.loc[both, "tps_mean"].max(), tg.loc[both, "tps_mean"].max()

    def score(col: str):
        return balanced_score(pp.loc[both, col], tg.loc[both, col], best_pp, best_tg).values

    scores = pd.DataFrame({"config_key": both, "tps_mean": score("tps_mean"), "ci_low": score("ci_low"),
                           "ci_high": score("ci_high"),
                           **{c: pp.loc[both, c].values
                              for c in ("strategy", "strategy_params", "placement", "knobs")}})
    return scores.sort_values(["tps_mean", "config_key"], ascending=[False, True])


def _verdict(base: dict, criterion: str, test: str, ranked: pd.DataFrame) -> dict:
    win = ranked.iloc[0]
    row = {**base, "criterion": criterion, "test": test, "best": win["config_key"], "strategy": win["strategy"],
           "strategy_params": win["strategy_params"], "placement": win["placement"], "knobs": win["knobs"],
           "value": float(win["tps_mean"]), "ci_low": float(win["ci_low"]),
           "ci_high": float(win["ci_high"]), "runner_up": None, "runner_up_value": math.nan,
           "runner_up_ci_low": math.nan, "runner_up_ci_high": math.nan, "beyond_noise": False,
           "candidates": len(ranked)}
    if len(ranked) < 2:
        row["verdict"] = "only candidate"
        return row
    run = ranked.iloc[1]
    row.update(runner_up=run["config_key"], runner_up_value=float(run["tps_mean"]),
               runner_up_ci_low=float(run["ci_low"]), runner_up_ci_high=float(run["ci_high"]))
    verdict = noise_verdict(row["ci_low"], row["ci_high"], row["runner_up_ci_low"], row["runner_up_ci_high"])
    row["beyond_noise"] = verdict == "a"
    if verdict == "untested":
        row["verdict"] = "no confidence interval (a single repetition): lead not tested"
    elif row["beyond_noise"]:
        row["verdict"] = f"beyond noise (95% CIs do not overlap with {run['config_key']})"
    else:
        row["verdict"] = f"within noise (95% CIs overlap with {run['config_key']})"
    return row


def pairwise_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """For every (sweep_label, model, engine, tool, test) and every unordered pair of its configurations: `a`
    and `b` (config_keys, a < b), their means and 95% CIs, and `verdict`: "a" (a faster beyond noise), "b",
    "tie" (the intervals overlap) or "untested" (an interval is missing). Columns: `PAIR_COLUMNS`, sorted."""
    rows = []
    if table.empty:
        return pd.DataFrame(rows, columns=PAIR_COLUMNS)
    table = _scoped(table)
    for key, group in table.groupby([*SCOPE, "test"], sort=True, dropna=False):
        configs = group.sort_values("config_key").to_dict("records")
        for a, b in itertools.combinations(configs, 2):
            rows.append({**dict(zip([*SCOPE, "test"], key)), "a": a["config_key"], "b": b["config_key"],
                         "a_mean": a["tps_mean"], "b_mean": b["tps_mean"], "a_ci_low": a["ci_low"],
                         "a_ci_high": a["ci_high"], "b_ci_low": b["ci_low"], "b_ci_high": b["ci_high"],
                         "verdict": noise_verdict(a["ci_low"], a["ci_high"], b["ci_low"], b["ci_high"])})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)
