"""harness.analysis on hand-written schema-2 results (one row per configuration, test and process): the process
as the unit of replication, no pooling across models or engines, two strategies with the same placement text
kept apart, pairwise verdicts, the report's Stability section, community.csv, and `moebench compare` as a
regression gate. Every expected number is computed here with numpy and scipy (or by hand), not by the code
under test."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from conftest import run_cli
from harness.analysis import best_strategies, compare, load_results, pairwise_verdicts, regressions, summarize
from harness.results.record import COLUMNS

GOLDEN = Path(__file__).parent / "data" / "sweep-tiny"
PLACEMENT = "everything on accel0"  # engine-fit and all-gpu place the same on a small model
STRATEGIES = {"all-gpu": "", "engine-fit": json.dumps({"margin_mib": 1024})}
ALL_GPU, ENGINE_FIT = "all-gpu @ everything on accel0", "engine-fit(margin_mib=1024) @ everything on accel0"

# (model, engine, strategy, test) -> the repetitions of each process; a process's mean is the middle value
SPEC = {
    ("synth:a", "mainline", "all-gpu", "tg16"): [[9.5, 10.5], [10.5, 11.5], [11.5, 12.5]],        # 10, 11, 12
    ("synth:a", "mainline", "engine-fit", "tg16"): [[19.5, 20.5], [20.5, 21.5], [21.5, 22.5]],    # 20, 21, 22
    ("synth:a", "mainline", "all-gpu", "pp64"): [[199, 201], [201, 203], [203, 205]],             # 200, 202, 204
    ("synth:a", "mainline", "engine-fit", "pp64"): [[99, 101], [100, 102], [101, 103]],           # 100, 101, 102
    ("synth:b", "mainline", "all-gpu", "tg16"): [[99, 101], [114, 116], [129, 131]],              # 100, 115, 130
    ("synth:b", "mainline", "engine-fit", "tg16"): [[103, 105], [109, 111], [115, 117]],          # 104, 110, 116
    ("synth:a", "ik", "all-gpu", "tg16"): [[30, 32, 34]],                                         # one process
    ("synth:a", "ik", "engine-fit", "tg16"): [[40]],                                              # one repetition
}
WARNINGS = {
    ("synth:a", "mainline", "all-gpu", "tg16", 0): "cv 12% >= 10% across 3 processes; samples 45 ms < 100 ms",
    ("synth:a", "mainline", "all-gpu", "tg16", 1): "samples 45 ms < 100 ms",
    ("synth:b", "mainline", "engine-fit", "tg16", 2): "cv 11% >= 10% across 3 processes",
}


def write_sweep(folder: Path, scale: dict | None = None) -> Path:
    """A schema-2 runs.csv from SPEC, each configuration's repetitions multiplied by `scale[key]` (default 1);
    plus a failed fourth process of synth:b's all-gpu."""
    folder.mkdir(parents=True)
    rows = []
    for key, processes in SPEC.items():
        model, engine, strategy, test = key
        factor = (scale or {}).get(key, 1.0)
        for index, reps in enumerate(processes):
            reps = [r * factor for r in reps]
            rows.append(_row(model, engine, strategy, test, index, status="ok", tps_mean=float(np.mean(reps)),
                             tps_samples=json.dumps(reps), warnings=WARNINGS.get((*key, index), "")))
    rows.append(_row("synth:b", "mainline", "all-gpu", "tg16", 3, status="failed", reason="engine exited with code 1"))
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _row(model, engine, strategy, test, index, **extra) -> dict:
    return {"schema_version": 2, "run_id": f"{model}-{engine}-{strategy}-{test}-{index}",
            "config_id": f"{model}-{engine}-{strategy}", "process_index": index, "sweep": "s2", "tool": "llama-bench",
            "strategy": strategy, "strategy_params": STRATEGIES[strategy], "placement": PLACEMENT, "test": test,
            "engine": engine, "model": model, "tps_ci_low": 0, "tps_ci_high": 1,  # the runner's: not used here
            **extra}


def t_interval(samples) -> tuple[float, float, float]:
    samples = np.asarray(samples, dtype=float)
    mean = samples.mean()  # on the log scale (harness.intervals)
    half = scipy_stats.t.ppf(0.975, len(samples) - 1) * samples.std(ddof=1) / math.sqrt(len(samples)) / mean
    return mean, mean * math.exp(-half), mean * math.exp(half)


def process_means(key, factor=1.0) -> list[float]:
    return [float(np.mean(reps)) * factor for reps in SPEC[key]]


@pytest.fixture()
def sweep(tmp_path) -> Path:
    return write_sweep(tmp_path / "before")


@pytest.fixture()
def table(sweep) -> pd.DataFrame:
    return summarize(load_results(sweep))


def _one(table, model, engine, key, test) -> pd.Series:
    rows = table[(table["model"] == model) & (table["engine"] == engine) & (table["config_key"] == key)
                 & (table["test"] == test)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_load_schema_two(sweep):
    df = load_results(sweep)
    assert len(df) == 2 * 3 * 2 + 2 * 3 + 2 + 1
    assert sorted(df["process_index"].unique()) == [0, 1, 2, 3]
    assert df.loc[df["status"] == "failed", "process_index"].tolist() == [3]
    assert (df["warnings"] != "").sum() == 3
    assert set(df["config_key"]) == {ALL_GPU, ENGINE_FIT}
    both = load_results([GOLDEN, sweep])  # versions 1 and 2 together
    assert (both.loc[both["schema_version"] == 1, "process_index"] == 0).all()
    assert (both.loc[both["schema_version"] == 1, "warnings"] == "").all()


def test_processes_are_the_unit(table):
    assert len(table) == 8
    row = _one(table, "synth:a", "mainline", ALL_GPU, "tg16")
    mean, low, high = t_interval([10, 11, 12])  # the processes' means, not the six repetitions
    assert (row["unit"], row["processes"], row["n"]) == ("processes", 3, 3)
    assert (row["tps_mean"], row["ci_low"], row["ci_high"]) == pytest.approx((mean, low, high))
    # by hand: 4.3027 / sqrt(3) = 2.48414 tokens/s, on the log scale 2.48414 / 11
    assert (low, high) == pytest.approx((11 * math.exp(-2.48414 / 11), 11 * math.exp(2.48414 / 11)), abs=1e-4)
    assert row["cv_pct"] == pytest.approx(100 / 11)
    assert row["warnings"] == "cv 12% >= 10% across 3 processes; samples 45 ms < 100 ms"
    failed_too = _one(table, "synth:b", "mainline", ALL_GPU, "tg16")  # the failed fourth process is not one
    assert (failed_too["processes"], failed_too["n"]) == (3, 3)
    assert failed_too["cv_pct"] == pytest.approx(15 / 115 * 100)
    single = _one(table, "synth:a", "ik", ALL_GPU, "tg16")  # one process: its repetitions
    assert (single["unit"], single["processes"], single["n"]) == ("repetitions", 1, 3)
    assert (single["tps_mean"], single["ci_low"], single["ci_high"]) == pytest.approx(t_interval([30, 32, 34]))
    lone = _one(table, "synth:a", "ik", ENGINE_FIT, "tg16")
    assert (lone["n"], lone["tps_mean"]) == (1, 40) and math.isnan(lone["ci_low"]) and math.isnan(lone["cv_pct"])


def test_no_pooling_across_models_engines_or_same_placement_strategies(table):
    for model, engine, strategy, test in SPEC:
        key = ALL_GPU if strategy == "all-gpu" else ENGINE_FIT
        row = _one(table, model, engine, key, test)
        means = process_means((model, engine, strategy, test))
        samples = means if len(means) > 1 else SPEC[(model, engine, strategy, test)][0]
        assert row["tps_mean"] == pytest.approx(np.mean(samples)) and row["n"] == len(samples)
    mainline_a = table[(table["model"] == "synth:a") & (table["engine"] == "mainline") & (table["test"] == "tg16")]
    assert sorted(mainline_a["tps_mean"]) == pytest.approx([11, 21])  # same placement text, two configurations


def test_pairwise_verdicts(table):
    pairs = pairwise_verdicts(table)
    assert {"sweep_label", "model", "engine", "tool", "test", "a", "b", "a_mean", "b_mean", "verdict"} <= set(pairs)
    assert len(pairs) == 4  # one pair per (model, engine, tool, test)
    assert (pairs["a"] == ALL_GPU).all() and (pairs["b"] == ENGINE_FIT).all()
    got = {(p["model"], p["engine"], p["test"]): (p["verdict"], p["a_mean"], p["b_mean"]) for _, p in pairs.iterrows()}
    # hand-checked: [8.5, 13.5] vs [18.5, 23.5]; [197.0, 207.0] vs [98.5, 103.5]; [77.7, 152.3] vs [95.1, 124.9]
    assert got[("synth:a", "mainline", "tg16")] == ("b", pytest.approx(11), pytest.approx(21))
    assert got[("synth:a", "mainline", "pp64")] == ("a", pytest.approx(202), pytest.approx(101))
    assert got[("synth:b", "mainline", "tg16")] == ("tie", pytest.approx(115), pytest.approx(110))
    assert got[("synth:a", "ik", "tg16")] == ("untested", pytest.approx(32), pytest.approx(40))


def test_best_strategies_per_model_and_engine(table):
    best = best_strategies(table).set_index(["model", "engine", "criterion"])
    assert len(best) == 3 + 1 + 1  # synth:a mainline: pp, tg, balanced; synth:b mainline: tg; synth:a ik: tg
    assert best.loc[("synth:a", "mainline", "pp"), "best"] == ALL_GPU
    assert best.loc[("synth:a", "mainline", "pp"), "beyond_noise"]
    assert best.loc[("synth:a", "mainline", "tg"), "best"] == ENGINE_FIT
    assert best.loc[("synth:a", "mainline", "tg"), "beyond_noise"]
    # balanced by hand: all-gpu sqrt(1 * 11/21) = 0.724 against engine-fit sqrt(101/202 * 1) = 0.707
    balanced = best.loc[("synth:a", "mainline", "balanced")]
    assert balanced["best"] == ALL_GPU and balanced["value"] == pytest.approx(math.sqrt(11 / 21))
    assert balanced["runner_up_value"] == pytest.approx(math.sqrt(101 / 202)) and not balanced["beyond_noise"]
    assert not best.loc[("synth:b", "mainline", "tg"), "beyond_noise"]
    assert best.loc[("synth:b", "mainline", "tg"), "best"] == ALL_GPU  # 115 > 110, within noise
    assert "single repetition" in best.loc[("synth:a", "ik", "tg"), "verdict"]


def test_report_stability_and_community(sweep):
    result = run_cli("report", sweep)  # with plots: two configurations share a placement text
    assert result.returncode == 0, result.stderr
    report = (sweep / "report.md").read_text()
    stability = report.split("## Stability", 1)[1].split("\n## ", 1)[0]
    assert "Intervals over **processes** for 6 of 8 configuration × test rows (3 processes each" in stability
    assert "**repetitions** of a single process for 1 of 8 configuration × test rows (3 repetitions" in stability
    assert "A single sample, so no interval, for 1 of 8." in stability
    assert "≥ 10% for 1 of 7 configuration × test rows:" in stability  # synth:b all-gpu: 15 / 115 = 13.0%
    assert f"| mainline | synth:b | llama-bench | {ALL_GPU} | tg16 | processes | 3 | 13.0 |" in stability
    assert "Stability warnings in 3 of 21 rows" in stability
    assert "| cv | 2 | 2 | cv 12% >= 10% across 3 processes |" in stability
    assert "| samples | 2 | 1 | samples 45 ms < 100 ms |" in stability
    assert f"| mainline | synth:a | llama-bench | {ALL_GPU} | tg16 | 2 | 3 |" in stability  # the worst first
    assert "No stability warnings" not in stability
    assert (sweep / "plots" / "throughput.png").exists()
    community = pd.read_csv(sweep / "community.csv", keep_default_na=False, na_values=[""])
    assert len(community) == 8 and (community["community_schema_version"] == 3).all()
    row = community[(community["model"] == "synth:a") & (community["engine"] == "mainline")
                    & (community["strategy"] == "all-gpu") & (community["test"] == "tg16")].iloc[0]
    assert (row["processes"], row["n"]) == (3, 3)
    assert row["cv_pct"] == pytest.approx(100 / 11)
    assert (row["tps_ci_low"], row["tps_ci_high"]) == pytest.approx(t_interval([10, 11, 12])[1:])
    assert row["warnings"] == "cv 12% >= 10% across 3 processes; samples 45 ms < 100 ms"
    assert (community["schema_version"] == 2).all()


def _ratio_by_hand(key, factor):
    """Delta method on the log ratio, Welch-Satterthwaite df, written out with numpy and scipy."""
    a = np.array(process_means(key))
    b = a * factor
    va, vb = a.var(ddof=1) / (len(a) * a.mean() ** 2), b.var(ddof=1) / (len(b) * b.mean() ** 2)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    ratio = b.mean() / a.mean()
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


SLOWER = {("synth:a", "mainline", "engine-fit", "tg16"): 0.8, ("synth:b", "mainline", "all-gpu", "tg16"): 0.9}


def test_compare_per_engine_with_ratio_intervals(sweep, tmp_path):
    after = write_sweep(tmp_path / "after", SLOWER)
    frame = compare([sweep, after])
    assert len(frame) == 8 and set(frame["engine"]) == {"mainline", "ik"}  # no engine dropped
    ratio, low, high = "after/before", "after/before low", "after/before high"
    by = {(r["model"], r["engine"], r["strategy"], r["test"]): r for _, r in frame.iterrows()}
    for key, factor in SLOWER.items():
        assert (by[key][ratio], by[key][low], by[key][high]) == pytest.approx(_ratio_by_hand(key, factor))
    assert (by[("synth:a", "mainline", "engine-fit", "tg16")][low],
            by[("synth:a", "mainline", "engine-fit", "tg16")][high]) == pytest.approx((0.718, 0.891), abs=1e-3)
    assert by[("synth:b", "mainline", "all-gpu", "tg16")][high] > 1  # 0.9, but within noise
    ik = by[("synth:a", "ik", "all-gpu", "tg16")]
    assert ik[ratio] == pytest.approx(1.0) and ik[low] < 1 < ik[high]  # over the repetitions of one process
    assert math.isnan(by[("synth:a", "ik", "engine-fit", "tg16")][low])  # a single sample: no interval
    slow = regressions(frame, 5)
    assert slow[["model", "engine", "strategy", "test"]].values.tolist() == \
        [["synth:a", "mainline", "engine-fit", "tg16"]]
    assert regressions(frame, 25).empty  # 0.8 is not below 0.75


def test_compare_cli_regression_gate(sweep, tmp_path):
    after = write_sweep(tmp_path / "after", SLOWER)
    result = run_cli("compare", sweep, after, "--fail-if-slower", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slower than 5% beyond noise (ratio < 0.950 and its 95% interval below 1): 1" in result.stdout
    assert f"synth:a | mainline | llama-bench | {ENGINE_FIT} | tg16: after/before = 0.800 [0.718, 0.891]" \
        in result.stdout
    assert "synth:b | mainline" not in result.stdout.split("beyond noise (ratio")[1]
    result = run_cli("compare", sweep, after, "--fail-if-slower", "25")
    assert result.returncode == 0 and "no row slower than 25% beyond noise" in result.stdout
    result = run_cli("compare", sweep, after)
    assert result.returncode == 0
    assert "| ik | llama-bench |" in result.stdout and "0.800 [0.718, 0.891]" in result.stdout
    result = run_cli("compare", after, sweep, "--fail-if-slower", "5")  # faster: passes
    assert result.returncode == 0, result.stdout
    result = run_cli("compare", sweep, after, "--fail-if-slower", "120")
    assert result.returncode == 2 and "--fail-if-slower" in result.stderr


def test_warning_kinds():
    from harness.warnings import legacy_kind as warning_kind  # the free text of schema 1/2 rows

    assert warning_kind("cv 12% >= 10% across 3 processes") == "cv"
    assert warning_kind("samples 45 ms < 100 ms") == "samples"
    assert warning_kind("oversubscribed: 4 threads on 2 CPUs (0-1)") == "oversubscribed"
    assert warning_kind("outlier process 9.0 t/s (median 20.0)") == "outlier process"
    assert warning_kind("GPU throttled: power cap") == "GPU throttled"
