"""What a tool's rows will measure, known at plan time: each tool's `row_tests` are the tests its measurement
gives (llama-bench's phases, the server's requests, sweep-bench's depths), the plan predicts exactly those
(`planned_tests`, stored in configurations.json), and a row's model columns are read from that prediction
(`runner.rows.model_columns`). Also the typed fields a tool's test carries (no untyped side channel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from harness.config import BenchSettings
from harness.engines.discover import Engine
from harness.models import inspect_preset
from harness.perf.configs import Predictor, PredictedTest, planned_tests
from harness.perf.workload import Layout, ModelledTest, workload
from harness.plan.flags import Target, compile_flags
from harness.plan.planner import Configuration, ResolvedModel, config_id
from harness.plan.stored import key_of_test, read_configurations
from harness.results.reader import read_runs
from harness.results.record import modelled_test
from harness.runner.rows import model_columns, planned_test
from harness.tools import tool_named
from harness.tools.llama_bench import bench_phases, parse_bench_json
from harness.tools.measurement import BenchTest
from harness.tools.sweep_bench import parse_sweep_table
from strategies.registry import get_strategy

BENCH = BenchSettings(prompt_tokens=[64, 128], gen_tokens=[16], depth=[0, 256], repetitions=2, ctx=1000)


def _keys(tests: list[BenchTest]) -> set[str]:
    return {key_of_test(*modelled_test(t.n_prompt, t.n_gen), t.n_depth) for t in tests}


def test_llama_bench_row_tests_are_its_phases():
    phases = bench_phases(BENCH)
    rows = [BenchTest(p.prompt_tokens[0], p.gen_tokens[0], p.depth[0], 1.0, 0.0, [1.0]) for p in phases]
    planned = tool_named("llama-bench").row_tests(BENCH, 512, 1024)
    assert {key_of_test(*t) for t in planned} == _keys(rows) and len(planned) == len(phases) == 6


def test_server_row_tests_are_its_requests_at_depth_zero():
    assert tool_named("llama-server").row_tests(BENCH, 512, 1024) == [("pp", 64, 0), ("pp", 128, 0), ("tg", 16, 0)]


def test_sweep_bench_row_tests_are_every_depth_of_its_table():
    """ik's table for -c 1000 -ub 256 (padded to 1024): pp 256 and tg 64 at N_KV 0, 256, 512, 768."""
    table = "\n".join(f"|   256 |     64 |  {d:5d} |    0.100 |  2560.00 |    0.200 |   320.00 |"
                      for d in (0, 256, 512, 768))
    planned = tool_named("llama-sweep-bench").row_tests(BENCH, 256, 1024)
    assert {key_of_test(*t) for t in planned} == _keys(parse_sweep_table(table))
    assert len(planned) == 8


def test_llama_bench_json_fills_the_typed_fields():
    text = json.dumps([{"n_prompt": 0, "n_gen": 16, "n_depth": 0, "avg_ts": 20.0, "stddev_ts": 1.0,
                        "samples_ts": [19.0, 21.0], "samples_ns": [800_000_000, 600_000_000],
                        "model_n_params": 123456}])
    (test,) = parse_bench_json(text)
    assert test.model_n_params == 123456 and test.samples_ns == [800_000_000, 600_000_000]
    assert test.measured_s == pytest.approx(1.4) and test.sample_ms == pytest.approx(700.0)
    assert test.tokens == 32 and test.concurrency == 1 and test.windows_mono == [] and test.name == "tg16"
    concurrent = BenchTest(0, 16, 0, 50.0, 0.0, [50.0], concurrency=4, total_tokens=64)
    assert concurrent.name == "tg16x4" and concurrent.tokens == 64


def _configuration(tool: str) -> Configuration:
    """A planned configuration of the tiny preset on an RPC device (no engine, no GGUF)."""
    info = inspect_preset("tiny")
    model = ResolvedModel("synth:tiny", Path("/nonexistent/tiny.gguf"), "synth:tiny:seed0", info)
    engine = Engine("mainline-gone", Path("/nonexistent"), "mainline", "test", version="0")
    target = Target("mainline", tool, "-ngl -ncmoe -ot -dev --rpc", "RPC0", "RPC0[127.0.0.1:50999]",
                    ("127.0.0.1:50999",))
    conf = Configuration(model, engine, tool, "cpu-moe", {}, threads=2)
    conf.placement = get_strategy("cpu-moe").placement(info, {})
    conf.target, conf.flags = target, compile_flags(conf.placement, info, target)
    conf.id = config_id(BENCH, conf)
    return conf


@pytest.mark.parametrize("tool", ["llama-bench", "llama-server", "llama-sweep-bench"])
def test_the_plan_predicts_each_row_test_of_the_tool(tool):
    conf = _configuration(tool)
    planned = planned_tests(Predictor({}), conf, BENCH)
    expected = {key_of_test(*t) for t in conf.engine_tool.row_tests(BENCH, 512, 1024)}
    assert set(planned) == expected
    for stored in planned.values():
        assert PredictedTest.from_dict(json.loads(json.dumps(stored.to_dict()))) == stored
        assert stored.predicted_graph_splits >= 1 and stored.predicted_tps is None  # no calibration here


def test_model_columns_are_read_from_the_plan():
    info = inspect_preset("tiny")
    placement = get_strategy("cpu-moe").placement(info, {})
    w = workload(info, Layout(placement), ModelledTest("tg", 16))
    tg = PredictedTest(w, 5, 40.12345, 80.0)
    planned = {key_of_test("tg", 16, 0): tg}
    row = BenchTest(0, 16, 0, 20.0, 0.0, [20.0])
    assert planned_test(planned, row) is tg and planned_test(planned, BenchTest(16, 16, 0, 1.0, 0.0, [1.0])) is None
    assert model_columns(tg, 20.0, 7) == {"graph_splits": 7, "predicted_graph_splits": 5, "predicted_tg_tps": 40.123,
                                          "roofline_tg_tps": 80.0, "efficiency_pct": 25.0}
    assert model_columns(None, 20.0, 7) == {"graph_splits": 7}
    uncalibrated = PredictedTest(w, 5, None, None)
    assert model_columns(uncalibrated, 20.0, None) == {"graph_splits": None, "predicted_graph_splits": 5}


def test_sweep_bench_rows_get_the_plans_prediction_at_every_depth(ik_engine, tmp_path):
    """ik's llama-sweep-bench on the RPC rig (a placed configuration): every row of its table, one per depth,
    gets the model columns of the test the plan predicted for it (configurations.json), none planned again."""
    (tmp_path / "bench.yaml").write_text("""
models: [{synth: tiny}]
engines: [ik]
tools: [llama-sweep-bench]
rpc_rig: true
strategies: [{name: cpu-moe}]
bench: {ctx: 256, ubatch: 64, processes: 1}
""")
    result = run_cli("run", tmp_path / "bench.yaml", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "default"
    rows = read_runs(folder)
    assert set(rows["status"]) == {"ok"}, rows["reason"].tolist()
    assert set(rows["test"]) == {f"{k}@d{d}" if d else k for k in ("pp64", "tg16") for d in (0, 64, 128, 192)}
    [stored] = read_configurations(folder).values()
    for _, row in rows.iterrows():
        kind, tokens = modelled_test(row["n_prompt"], row["n_gen"])
        planned = PredictedTest.from_dict(stored["tests"][key_of_test(kind, tokens, int(row["n_depth"]))])
        assert int(row["predicted_graph_splits"]) == planned.predicted_graph_splits >= 1
