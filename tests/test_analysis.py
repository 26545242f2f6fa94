"""harness.analysis on a checked-in golden results folder (a real sweep of the tiny model: every built-in
strategy, llama-bench and llama-server, 3 repetitions, RPC rig, no GPU), plus degraded copies of it."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from conftest import run_cli
from harness.analysis import (SUPPORTED_SCHEMA_VERSIONS, best_strategies, confidence_interval, load_results,
                              noise_verdict, pairwise_verdicts, parse_test, ratio_interval, summarize, t_critical)
from harness.analysis import plots
from harness.analysis.report import COMMUNITY_COLUMNS, compare
from harness.errors import UserError
from harness.results.schema import SCHEMA_VERSION

GOLDEN = Path(__file__).parent / "data" / "sweep-tiny"
TELEMETRY_ID = "2411f2abb2721331"
COMMUNITY_V3_COLUMNS = (
    "community_schema_version", "schema_version", "host_cpu", "host_cpu_cores", "host_ram_gib", "gpu_name",
    "gpu_vram_total_mib", "gpu_pcie", "engine", "engine_dialect", "engine_version", "model", "model_arch",
    "model_quant", "model_size_bytes", "tool", "strategy", "strategy_params", "placement", "test", "kind",
    "n_prompt", "n_gen", "n_depth", "concurrency", "threads", "ubatch", "batch", "threads_batch", "flash_attn",
    "op_offload", "load_mode", "cache_type_k", "cache_type_v", "processes", "n", "tps_mean", "tps_ci_low",
    "tps_ci_high", "cv_pct", "warnings", "ttft_ms_mean", "predicted_vram_bytes", "vram_peak_mib",
    "pcie_mib_per_token", "joules_per_token", "moebench_version",
)


@pytest.fixture(scope="module")
def golden():
    df = load_results(GOLDEN)
    table = summarize(df)
    return df, table, best_strategies(table)


def test_parse_test_names():
    assert parse_test("pp64") == {"kind": "pp", "size": 64, "depth": 0, "concurrency": 1}
    assert parse_test("tg16x3") == {"kind": "tg", "size": 16, "depth": 0, "concurrency": 3}
    assert parse_test("pp64@d128") == {"kind": "pp", "size": 64, "depth": 128, "concurrency": 1}
    assert parse_test("tg16x3@d128") == {"kind": "tg", "size": 16, "depth": 128, "concurrency": 3}
    assert parse_test("pp64+tg16")["kind"] == "pp+tg"
    assert parse_test("weird")["kind"] is None


def test_confidence_interval_uses_student_t():
    mean, low, high = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    half = 4.30265 / math.sqrt(3) / 2  # on the log scale: t(0.975, 2) * s / (sqrt(n) * mean), s = 1
    assert high == pytest.approx(2 * math.exp(half), rel=1e-4)
    assert low == pytest.approx(4 / high)
    mean, low, high = confidence_interval([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def test_t_critical_is_scipys_student_t():
    # the old hand table said 2.021 for every df from 31 to 40; t(0.975, 35) is 2.0301
    for df in (1, 2, 5, 30, 31, 35, 39, 60, 120, 1000):
        assert t_critical(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-12)
    assert t_critical(35) == pytest.approx(2.0301, abs=1e-4)
    assert t_critical(4.5) == pytest.approx(scipy_stats.t.ppf(0.975, 4.5), rel=1e-12)  # Welch's fractional df
    assert math.isnan(t_critical(0)) and math.isnan(t_critical(float("nan")))
    values = list(np.linspace(10, 20, 36))  # 35 degrees of freedom
    _, low, high = confidence_interval(values)
    half = scipy_stats.t.ppf(0.975, 35) * np.std(values, ddof=1) / math.sqrt(36) / np.mean(values)
    assert math.log(high / low) / 2 == pytest.approx(half, rel=1e-9)


def test_noise_verdict_is_interval_overlap():
    assert noise_verdict(11, 12, 9, 10) == "a"
    assert noise_verdict(9, 10, 11, 12) == "b"
    assert noise_verdict(9, 11, 10, 12) == "tie"
    assert noise_verdict(10, 11, 9, 10) == "tie"  # touching intervals overlap
    assert noise_verdict(float("nan"), 11, 9, 10) == "untested"
    assert noise_verdict(11, 12, 9, None) == "untested"


def test_ratio_interval_by_hand():
    # equal relative spread on both sides: v = s^2 / (n m^2) each, Welch-Satterthwaite df = 2(n - 1) = 4
    ratio, low, high, df = ratio_interval(21.0, 1.0, 3, 16.8, 0.8, 3)
    v = 1.0 / (3 * 21.0 ** 2)
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(2 * v)
    assert ratio == pytest.approx(0.8) and df == pytest.approx(4.0)
    assert (low, high) == pytest.approx((0.8 * math.exp(-half), 0.8 * math.exp(half)))
    assert math.isnan(ratio_interval(10.0, 1.0, 1, 12.0, 1.0, 3)[1])  # a single sample: no interval
    assert ratio_interval(10.0, 0.0, 3, 12.0, 0.0, 3)[:3] == pytest.approx((1.2, 1.2, 1.2))


def test_reads_schema_versions_one_and_two():
    assert SCHEMA_VERSION in SUPPORTED_SCHEMA_VERSIONS and 1 in SUPPORTED_SCHEMA_VERSIONS


def test_golden_load(golden):
    df, _, _ = golden
    assert len(df) == 48
    assert (df["schema_version"] == 1).all()
    assert (df["process_index"] == 0).all() and (df["warnings"] == "").all()  # version 1: process 0, no warnings
    assert df["tps_ci_low"].isna().all() and df["cpus"].isna().all()
    assert df["config_key"].nunique() == 12 and (df["config_key"] == df["placement"]).all()
    assert df["ok"].all()
    assert (df.groupby("tool").size() == 24).all()
    assert df["placement"].nunique() == 12
    assert sorted(df["test"].unique()) == ["pp64", "tg16"]
    assert (df["kind"].value_counts() == 24).all()
    assert (df["n_samples"] == 3).all()
    assert df.loc[df["strategy"] == "first-n-experts", "param_value"].dropna().sort_values().unique().tolist() == [2, 4]


def _golden_samples() -> dict:
    """tps_samples per (model, engine, tool, strategy, placement, test), read with the csv module."""
    out = {}
    with open(GOLDEN / "runs.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["model"], row["engine"], row["tool"], row["strategy"], row["placement"], row["test"])
            assert key not in out  # schema 1: one row per configuration and test
            out[key] = [float(v) for v in json.loads(row["tps_samples"])]
    return out


def _golden_by_hand() -> dict:
    """Mean, 95% t interval and CV per configuration and test with numpy and scipy, independent of
    harness.analysis."""
    out = {}
    for key, values in _golden_samples().items():
        samples = np.array(values)
        n, mean, sd = len(samples), samples.mean(), samples.std(ddof=1)
        half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) / mean  # on the log scale
        out[key] = {"n": n, "tps_mean": mean, "ci_low": mean * math.exp(-half), "ci_high": mean * math.exp(half),
                    "cv_pct": sd / mean * 100}
    return out


def test_golden_table_matches_an_independent_computation(golden):
    _, table, _ = golden
    expected = _golden_by_hand()
    assert len(table) == len(expected) == 48
    assert (table["unit"] == "repetitions").all() and (table["processes"] == 1).all() and (table["n"] == 3).all()
    for _, row in table.iterrows():
        want = expected[(row["model"], row["engine"], row["tool"], row["strategy"], row["placement"], row["test"])]
        for col in ("tps_mean", "ci_low", "ci_high", "cv_pct"):
            assert row[col] == pytest.approx(want[col], rel=1e-9), (row["config_key"], row["test"], col)
    row = table[(table["tool"] == "llama-bench") & (table["placement"] == "all-gpu") & (table["test"] == "pp64")].iloc[0]
    assert row["tps_mean"] == pytest.approx(2584.32, abs=0.01)
    # t(0.975, 2) = 4.3027, not the old table's 4.303; on the log scale (the linear interval was 707.12–4461.52)
    assert row["ci_low"] == pytest.approx(1249.92, abs=0.01)
    assert row["ci_high"] == pytest.approx(5343.30, abs=0.01)
    assert row["warnings"] == ""
    # sorted fastest first within a (tool, test)
    first = table.groupby(["tool", "test"]).head(1)
    assert set(first["placement"]) == {"all-gpu"}
    # custom's tg on llama-server is tight (65.7, 70.1, 60.4): narrower CI than all-gpu's
    def width(tool, placement, test):
        r = table[(table["tool"] == tool) & (table["placement"] == placement) & (table["test"] == test)].iloc[0]
        return r["ci_high"] - r["ci_low"]
    assert width("llama-server", "custom(overrides=blk\\.[0-3]\\.ffn_(up|gate)_exps=CPU)", "tg16") < \
        width("llama-server", "all-gpu", "tg16")


def test_golden_best(golden):
    _, _, best = golden
    assert len(best) == 6
    assert set(best["criterion"]) == {"pp", "tg", "balanced"}
    assert (best["best"] == "all-gpu").all()
    assert not best["beyond_noise"].any()  # 2 cores, 3 repetitions: every lead is within noise
    runner = best.set_index(["tool", "criterion"])["runner_up"]
    assert runner["llama-bench", "pp"] == "engine-fit(margin_mib=1024)"
    assert runner["llama-server", "pp"] == "last-n-experts(n=2)"
    assert runner["llama-server", "tg"] == "engine-fit(margin_mib=1024)"
    balanced = best[best["criterion"] == "balanced"]
    assert (balanced["value"] == 1.0).all()  # all-gpu is best at both
    assert (best["model"] == "synth:tiny").all()


def test_golden_pairwise_verdicts_agree_with_the_intervals(golden):
    _, table, best = golden
    pairs = pairwise_verdicts(table)
    assert len(pairs) == 2 * 2 * (12 * 11 // 2)  # per tool and test, every unordered pair of 12 configurations
    assert (pairs["a"] < pairs["b"]).all()
    by_key = {(k[2], k[4], k[5]): v for k, v in _golden_by_hand().items()}  # tool, placement (= config_key), test
    for _, p in pairs.iterrows():
        a, b = by_key[(p["tool"], p["a"], p["test"])], by_key[(p["tool"], p["b"], p["test"])]
        want = "a" if a["ci_low"] > b["ci_high"] else "b" if b["ci_low"] > a["ci_high"] else "tie"
        assert p["verdict"] == want, (p["a"], p["b"])
        assert p["a_mean"] == pytest.approx(a["tps_mean"]) and p["b_mean"] == pytest.approx(b["tps_mean"])
    pp = pairs[(pairs["tool"] == "llama-bench") & (pairs["test"] == "pp64")].set_index(["a", "b"])
    assert pp.loc[("all-gpu", "last-n-layers-cpu(n=2)"), "verdict"] == "a"
    assert pp.loc[("all-gpu", "engine-fit(margin_mib=1024)"), "verdict"] == "tie"
    # best_strategies' beyond_noise is the same verdict, between the winner and the runner-up
    indexed = pairs.set_index(["tool", "test", "a", "b"])["verdict"]
    for _, row in best[best["criterion"] != "balanced"].iterrows():
        a, b = sorted([row["best"], row["runner_up"]])
        winner = "a" if a == row["best"] else "b"
        assert row["beyond_noise"] == (indexed[(row["tool"], row["test"], a, b)] == winner)


def test_beyond_noise_when_intervals_separate():
    rows = []
    for placement, pp, tg in [("a", [100, 101, 99], [50, 51, 49]), ("b", [80, 81, 79], [60, 61, 59])]:
        for test, samples in (("pp64", pp), ("tg16", tg)):
            rows.append({"sweep_label": "s", "engine": "e", "tool": "llama-bench", "placement": placement,
                         "strategy": placement, "test": test, "ok": True, "samples": samples,
                         "tps_mean": sum(samples) / 3, "param_value": None, "strategy_params": None,
                         **parse_test(test)})
    best = best_strategies(summarize(pd.DataFrame(rows))).set_index("criterion")
    assert best.loc["pp", "best"] == "a" and best.loc["pp", "beyond_noise"]
    assert best.loc["tg", "best"] == "b" and best.loc["tg", "beyond_noise"]
    assert best.loc["balanced", "candidates"] == 2
    assert "beyond noise" in best.loc["pp", "verdict"]


@pytest.fixture(scope="module")
def golden_reported(tmp_path_factory):
    """`moebench report GOLDEN --out DIR` once for the tests that read its outputs: (the run, DIR)."""
    out = tmp_path_factory.mktemp("golden-report") / "rep"
    return run_cli("report", GOLDEN, "--out", out), out


def test_golden_plots(golden_reported, golden, tmp_path, tiny_model):
    df, _, _ = golden
    result, out = golden_reported  # save_all's plots, as the report writes them (report.md links each)
    assert result.returncode == 0, result.stderr
    pngs = sorted((out / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"throughput", "param_sweep", "vram_pareto", "traffic", "telemetry"} <= names
    assert {p.stem for p in (out / "plots").glob("*.svg")} == names
    assert (out / "report.md").read_text().count("](plots/") == len(pngs)
    for png in pngs:
        assert png.stat().st_size > 10_000, png
    fig = plots.plot_placement_map(df, str(tiny_model))
    assert fig is not None and len([a for a in fig.axes if a.images]) == 12
    path = plots.save_figure(fig, tmp_path, "map")
    assert path.stat().st_size > 10_000
    grid = plots.placement_grid(__import__("harness.models", fromlist=["x"]).inspect_model(tiny_model),
                                "first-n-experts", {"n": 2})
    rows, groups, matrix = grid
    experts = groups.index("routed_experts")
    assert matrix[rows.index("blk.0"), experts] == 0 and matrix[rows.index("blk.2"), experts] == 1


def test_pareto_front():
    pts = pd.DataFrame({"c": [1, 2, 3, 4], "g": [10, 5, 20, 15]})
    assert plots.pareto_front(pts, "c", "g")["c"].tolist() == [1, 3]


def test_report_cli(golden_reported):
    result, rep = golden_reported
    assert result.returncode == 0, result.stderr
    assert "best for tg" in result.stdout and "all-gpu" in result.stdout
    report = (rep / "report.md").read_text()
    assert "AMD EPYC (2 cores)" in report and "synth:tiny (qwen3moe, Q8_0" in report
    assert "mainline-11434.0.0" in report and "within noise" in report
    assert (rep / "plots" / "throughput.png").stat().st_size > 10_000
    # Stability: every interval over 3 repetitions of one process; the CVs >= 10% counted by hand
    stability = report.split("## Stability", 1)[1].split("\n## ", 1)[0]
    assert "over the **repetitions** of a single process for 48 of 48" in stability
    noisy = sum(v["cv_pct"] >= 10 for v in _golden_by_hand().values())
    assert noisy == 38 and f"≥ 10% for {noisy} of 48" in stability
    assert "No stability warnings in the rows." in stability
    # best (6 rows), the 15 noisiest, all measurements (48 rows): each a table row starting with the engine
    assert report.count("\n| mainline-11434.0.0 |") == 6 + 15 + 48
    community = pd.read_csv(rep / "community.csv", keep_default_na=False, na_values=[""])
    assert tuple(community.columns) == COMMUNITY_COLUMNS
    assert {"processes", "cv_pct", "warnings"} <= set(community.columns)
    assert len(community) == 48 and (community["schema_version"] == 1).all()
    # the columns of community_schema_version 3 as harness/analysis/community.py documents them: a change to
    # the columns without a new version fails here
    assert (community["community_schema_version"] == 3).all() and tuple(community.columns) == COMMUNITY_V3_COLUMNS
    assert {"ubatch", "flash_attn", "load_mode", "cache_type_k"} <= set(community.columns)
    assert (community["processes"] == 1).all() and community["warnings"].isna().all()
    expected = _golden_by_hand()
    for _, row in community.iterrows():
        want = expected[(row["model"], row["engine"], row["tool"], row["strategy"], row["placement"], row["test"])]
        assert row["cv_pct"] == pytest.approx(want["cv_pct"]) and row["tps_ci_low"] == pytest.approx(want["ci_low"])


def _degraded(tmp_path: Path) -> Path:
    folder = tmp_path / "degraded"
    folder.mkdir()
    shutil.copy(GOLDEN / "meta.json", folder)
    df = pd.read_csv(GOLDEN / "runs.csv", dtype=str)
    failed = df["strategy"] == "cpu-moe"
    skipped = df["strategy"] == "last-n-experts"
    for col in ("tps_mean", "tps_stddev", "tps_samples"):
        df.loc[failed | skipped, col] = ""
    df.loc[failed, "status"], df.loc[failed, "reason"] = "failed", "engine exited with code 1"
    df.loc[skipped, "status"], df.loc[skipped, "reason"] = "skipped: predicted-oom", "needs 99 GiB"
    # a single repetition everywhere else
    df.loc[~(failed | skipped), "tps_samples"] = df.loc[~(failed | skipped), "tps_samples"].map(
        lambda s: json.dumps(json.loads(s)[:1]))
    df.to_csv(folder / "runs.csv", index=False)  # and no telemetry folder at all
    return folder


def test_degraded_folder_reports_sensibly(tmp_path):
    folder = _degraded(tmp_path)
    df = load_results(folder)
    assert (df["status"] == "failed").sum() == 4 and df["skipped"].sum() == 8
    table = summarize(df)
    assert len(table) == 48 - 12 and (table["n"] == 1).all() and table["ci_low"].isna().all()
    best = best_strategies(table)
    assert not best["beyond_noise"].any()
    assert best["verdict"].str.contains("single repetition").all()
    assert not pairwise_verdicts(table)["verdict"].isin(["a", "b"]).any()
    assert (pairwise_verdicts(table)["verdict"] == "untested").all()
    assert plots.pick_telemetry_row(df) is None
    result = run_cli("report", folder)
    assert result.returncode == 0, result.stderr
    report = (folder / "report.md").read_text()
    assert "## Failed and skipped" in report and "skipped: predicted-oom" in report
    assert report.count("18 ok, 2 failed, 4 skipped") == 2  # per tool: 24 rows
    assert not (folder / "plots" / "telemetry.png").exists()
    assert (folder / "plots" / "throughput.png").exists()


def test_unknown_schema_version_is_one_line_error(tmp_path):
    folder = tmp_path / "future"
    folder.mkdir()
    df = pd.read_csv(GOLDEN / "runs.csv", dtype=str)
    df["schema_version"] = "99"
    df.to_csv(folder / "runs.csv", index=False)
    with pytest.raises(UserError, match="unknown schema version 99"):
        load_results(folder)
    result = run_cli("report", folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "unknown schema version 99" in result.stderr


def test_folder_without_runs_csv(tmp_path):
    with pytest.raises(UserError, match="no runs.csv"):
        load_results(tmp_path)
    result = run_cli("compare", tmp_path, GOLDEN)
    assert result.returncode == 2 and "no runs.csv" in result.stderr and "Traceback" not in result.stderr


def test_compare(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    df = pd.read_csv(GOLDEN / "runs.csv", dtype=str)
    df["tps_samples"] = df["tps_samples"].map(lambda s: json.dumps([2 * v for v in json.loads(s)]))
    df.to_csv(other / "runs.csv", index=False)
    wide = compare([GOLDEN, other])
    assert len(wide) == 48
    assert wide["other/sweep-tiny"].round(6).eq(2.0).all()
    # every sample doubled: the same relative spread, so the interval is 2 * exp(+-t(df) * sqrt(2 v)), df = 4
    for _, row in wide.iterrows():
        samples = np.array([v for k, v in _golden_samples().items()
                            if k[2:] == (row["tool"], row["strategy"], row["placement"], row["test"])][0])
        v = samples.var(ddof=1) / (len(samples) * samples.mean() ** 2)
        half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(2 * v)
        assert row["other/sweep-tiny low"] == pytest.approx(2 * math.exp(-half), rel=1e-9)
        assert row["other/sweep-tiny high"] == pytest.approx(2 * math.exp(half), rel=1e-9)
    result = run_cli("compare", GOLDEN, other, "--out", tmp_path / "cmp.csv", "--fail-if-slower", "5")
    assert result.returncode == 0, result.stdout + result.stderr  # twice as fast: no regression
    assert "other/sweep-tiny" in result.stdout and "no row slower than 5% beyond noise" in result.stdout
    assert len(pd.read_csv(tmp_path / "cmp.csv")) == 48
    # the other way round every ratio is 0.5, slower beyond noise where 0.5 * exp(t(4) * sqrt(2 v)) < 1, i.e.
    # only where 3 noisy repetitions still give an interval below 1
    slower = sum(scipy_stats.t.ppf(0.975, 4) * math.sqrt(2 * np.var(s, ddof=1) / (3 * np.mean(s) ** 2)) < math.log(2)
                 for s in _golden_samples().values())
    assert 0 < slower < 48
    result = run_cli("compare", other, GOLDEN, "--fail-if-slower", "5")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"slower than 5% beyond noise (ratio < 0.950 and its 95% interval below 1): {slower}" in result.stdout
    assert result.stdout.count("sweep-tiny/other = 0.500 [") == slower
    result = run_cli("compare", other, GOLDEN, "--fail-if-slower", "50")  # 0.5 is not below 0.5
    assert result.returncode == 0, result.stdout + result.stderr
