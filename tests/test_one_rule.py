"""Each rule written once: the interval rule (`harness.intervals.replication_samples`) gives `moebench tune` and
`moebench explain` (`harness.analysis.stats.measured_interval`) the report's interval, a one-process
configuration included; the balanced score (`harness.balanced_score`) of tune is the report's. On the
hand-written schema-2 sweep of test_analysis_processes (its expected numbers are computed there by hand)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from test_analysis_processes import SPEC, write_sweep
from harness.analysis import best_strategies, load_results, summarize
from harness.analysis.explain import EXPLAINED_BASELINES
from harness.analysis.selection import BASELINES, scores
from harness.analysis.stats import measured_interval
from harness.intervals import interval, replication_samples
from harness.tune.search import Tuner
from harness.tune.settings import score


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)


@pytest.fixture()
def folder(tmp_path):
    return write_sweep(tmp_path / "s")


def test_tune_and_explain_get_the_reports_interval(folder):
    table = summarize(load_results(folder))
    raw = pd.read_csv(folder / "runs.csv")
    ok = raw[raw["status"] == "ok"]
    for model, engine, strategy, test in SPEC:
        rows = ok[(ok["model"] == model) & (ok["engine"] == engine) & (ok["strategy"] == strategy)
                  & (ok["test"] == test)]
        got = measured_interval(rows)
        want = table[(table["model"] == model) & (table["engine"] == engine) & (table["strategy"] == strategy)
                     & (table["test"] == test)].iloc[0]
        assert (got.unit, got.n) == (want["unit"], want["n"]), (model, engine, strategy, test)
        for a, b in ((got.mean, want["tps_mean"]), (got.low, want["ci_low"]), (got.high, want["ci_high"]),
                     (got.cv_pct, want["cv_pct"])):
            assert _same(a, b), (model, engine, strategy, test, got, want.to_dict())
    one = ok[(ok["engine"] == "ik") & (ok["strategy"] == "all-gpu")]  # one process, three repetitions
    tuned = Tuner.__new__(Tuner)._measured(raw, one["config_id"].iat[0], "all-gpu", {}, {}).tps["tg"]
    single = table[(table["engine"] == "ik") & (table["strategy"] == "all-gpu")].iloc[0]
    assert not math.isnan(tuned[1]) and tuned == pytest.approx((single["tps_mean"], single["ci_low"],
                                                                single["ci_high"]))


def test_the_interval_rule():
    assert replication_samples([10.0, 12.0], [1.0, 2.0]) == ("processes", [10.0, 12.0])
    assert replication_samples([11.0], [10.0, 12.0]) == ("repetitions", [10.0, 12.0])
    assert replication_samples([11.0], []) == ("repetitions", [11.0])  # a lone mean: one sample, no interval
    assert replication_samples([10.0, float("nan"), 12.0]) == ("processes", [10.0, 12.0])
    lone = interval([11.0])
    assert (lone.n, lone.unit) == (1, "repetitions") and math.isnan(lone.low)


def test_tunes_balanced_score_is_the_reports(folder):
    table = summarize(load_results(folder))
    best = best_strategies(table)
    scope = table[(table["model"] == "synth:a") & (table["engine"] == "mainline")]
    means = {(r["config_key"], r["test"][:2]): r["tps_mean"] for _, r in scope.iterrows()}
    keys = sorted({k for k, _ in means})
    reference = {kind: max(means[(k, kind)] for k in keys) for kind in ("pp", "tg")}
    tuned = {k: score({kind: means[(k, kind)] for kind in ("pp", "tg")}, "balanced", reference) for k in keys}
    balanced = best[(best["model"] == "synth:a") & (best["engine"] == "mainline")
                    & (best["criterion"] == "balanced")].iloc[0]
    assert tuned[balanced["best"]] == balanced["value"] == max(tuned.values())
    assert tuned[balanced["runner_up"]] == balanced["runner_up_value"] < 1
    charted = scores(scope)["score"]
    assert all(charted[k] == tuned[k] for k in keys)


def test_explain_baselines_are_report_baselines():
    assert set(EXPLAINED_BASELINES) == set(BASELINES) - {"engine-fit"}
