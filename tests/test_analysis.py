"""harness.analysis on a checked-in golden results folder (a real sweep of the tiny model: every built-in
strategy, llama-bench and llama-server, 3 repetitions, RPC rig, no GPU), plus degraded copies of it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from harness.analysis import best_strategies, confidence_interval, load_results, parse_test, summarize
from harness.analysis import plots
from harness.analysis.report import COMMUNITY_COLUMNS, compare
from harness.errors import UserError

GOLDEN = Path(__file__).parent / "data" / "sweep-tiny"
TELEMETRY_ID = "2411f2abb2721331"


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
    assert high - mean == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert low == pytest.approx(4 - high)
    mean, low, high = confidence_interval([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)


def test_golden_load(golden):
    df, _, _ = golden
    assert len(df) == 48
    assert df["ok"].all()
    assert (df.groupby("tool").size() == 24).all()
    assert df["placement"].nunique() == 12
    assert sorted(df["test"].unique()) == ["pp64", "tg16"]
    assert (df["kind"].value_counts() == 24).all()
    assert (df["n_samples"] == 3).all()
    assert df.loc[df["strategy"] == "first-n-experts", "param_value"].dropna().sort_values().unique().tolist() == [2, 4]


def test_golden_table(golden):
    _, table, _ = golden
    assert len(table) == 48 and (table["n"] == 3).all()
    assert ((table["ci_low"] < table["tps_mean"]) & (table["tps_mean"] < table["ci_high"])).all()
    row = table[(table["tool"] == "llama-bench") & (table["placement"] == "all-gpu") & (table["test"] == "pp64")].iloc[0]
    assert row["tps_mean"] == pytest.approx(2584.32, abs=0.01)
    assert row["ci_low"] == pytest.approx(706.97, abs=0.05)
    assert row["ci_high"] == pytest.approx(4461.67, abs=0.05)
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


def test_golden_plots(golden, tmp_path, tiny_model):
    df, table, _ = golden
    pngs = plots.save_all(df, table, tmp_path)
    names = {p.stem for p in pngs}
    assert {"throughput", "param_sweep", "vram_pareto", "traffic", "telemetry"} <= names
    for png in pngs:
        assert png.stat().st_size > 10_000, png
        assert png.with_suffix(".svg").exists()
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


def test_report_cli(tmp_path):
    result = run_cli("report", GOLDEN, "--out", tmp_path / "rep")
    assert result.returncode == 0, result.stderr
    assert "best for tg" in result.stdout and "all-gpu" in result.stdout
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "AMD EPYC (2 cores)" in report and "synth:tiny (qwen3moe, Q8_0" in report
    assert "mainline-11434.0.0" in report and "within noise" in report
    assert report.count("\n| mainline-11434.0.0 |") == 6 + 48
    assert (tmp_path / "rep" / "plots" / "throughput.png").stat().st_size > 10_000
    community = pd.read_csv(tmp_path / "rep" / "community.csv")
    assert tuple(community.columns) == COMMUNITY_COLUMNS
    assert len(community) == 48 and (community["schema_version"] == 1).all()
    assert (community["community_schema_version"] == 1).all()


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
    result = run_cli("compare", GOLDEN, other, "--out", tmp_path / "cmp.csv")
    assert result.returncode == 0, result.stderr
    assert "other/sweep-tiny" in result.stdout
    assert len(pd.read_csv(tmp_path / "cmp.csv")) == 48
