"""The one planner request (issue 18): `plan(request)` without a bench.yaml, `request_from_config` of one, the
configurations a sweep stores (configurations.json) and `moebench explain` reading them instead of planning
again, `moebench flags` through the planner (knobs apply)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import run_cli
from harness.analysis.explain import explain_folder
from harness.config import BenchSettings, EngineSpec, ModelSpec, StrategySpec, load_config
from harness.config_devices import RpcRig
from harness.engines.discover import Engine
from harness.models import inspect_preset
from harness.perf.calibration import Calibration, ToolCalibration
from harness.perf.configs import Predictor, planned_tests
from harness.perf.configs import test_of as model_test
from harness.perf.model import Constants, Peaks
from harness.perf.workload import Workload
from harness.plan.flags import Target, compile_flags
from harness.plan.planner import Configuration, ResolvedModel, config_id, plan
from harness.plan.request import PlanRequest, request_from_config
from harness.plan.stored import configuration_record, read_configurations, key_of_test, write_configurations
from harness.tune.settings import TuneSettings
from strategies.registry import get_strategy

RIG = "RPC0[127.0.0.1:50999]"
BENCH = BenchSettings(prompt_tokens=[64], gen_tokens=[16], repetitions=2, processes=2)


def test_request_from_config_resolves_paths_and_keeps_the_settings(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "build").mkdir()
    (tmp_path / "bench.yaml").write_text(
        "models: [{path: m.gguf}]\nengines: [{name: mine, path: build}]\nrpc_rig: true\n"
        "strategies: [{name: first-n-experts, params: {n: '1..3'}}]\nbench: {ubatch: [256, 512], ctx: 512}\n"
        "engine_args: {mine: [-fmoe, '1']}\n")
    config = load_config(tmp_path / "bench.yaml")
    request = request_from_config(config)
    assert request.models[0].path == tmp_path / "m.gguf" and request.engines[0].path == tmp_path / "build"
    assert request.bench == config.bench and request.strategies == config.strategies
    assert request.rpc_rig == RpcRig() and request.engine_args == {"mine": ["-fmoe", "1"]}
    assert request.where(("bench", "ubatch")).startswith(f"{tmp_path / 'bench.yaml'}:5: bench.ubatch")


def test_tune_plans_what_it_runs(tmp_path):
    """The tune's request and the sweep it runs carry the same settings, so their configuration ids agree."""
    s = TuneSettings({"synth": "tiny"}, {"name": "mainline", "dialect": "mainline"}, True, None, 10.0,
                     knobs={"ubatch": [256, 512]}, out=tmp_path)
    strategies = [{"name": "first-n-experts", "params": {"n": [1, 2]}}]
    request, config = s.request(strategies), s.config(strategies)
    from_config = request_from_config(config)
    for name in ("models", "engines", "tools", "strategies", "bench", "devices", "rpc_rig", "vram_budget_mib"):
        assert getattr(request, name) == getattr(from_config, name), name
    assert config.name == "tune" and config.output == tmp_path


def test_workload_round_trips():
    conf = _configuration("first-n-experts", n=2)
    w, _ = Predictor({}).prediction(conf, model_test("tg", 16, 0, conf, BENCH))
    assert Workload.from_dict(json.loads(json.dumps(w.to_dict()))) == w


def _configuration(strategy: str, **params) -> Configuration:
    """A configuration as the planner makes one, of the tiny preset on an RPC device (no engine, no GGUF)."""
    info = inspect_preset("tiny")
    model = ResolvedModel("synth:tiny", Path("/nonexistent/tiny.gguf"), "synth:tiny:seed0",
                          info)
    engine = Engine("mainline-gone", Path("/nonexistent"), "mainline", "test", version="0")
    target = Target("mainline", "llama-bench", "-ngl -ncmoe -ot -dev --rpc", "RPC0", RIG, ("127.0.0.1:50999",))
    conf = Configuration(model, engine, "llama-bench", strategy, params, threads=2)
    conf.placement = get_strategy(strategy).placement(info, params)
    conf.target, conf.flags = target, compile_flags(conf.placement, info, target)
    conf.id = config_id(BENCH, conf)
    return conf


def _rows(conf: Configuration, tps: dict[str, list[float]]) -> list[dict]:
    return [{"schema_version": 3, "run_id": f"{conf.id}-{test}-{i}", "config_id": conf.id, "status": "ok", "test": test, "n_prompt": 64 if test == "pp64" else 0,
             "n_gen": 16 if test == "tg16" else 0, "n_depth": 0, "tps_mean": v, "tps_samples": json.dumps([v]),
             "graph_splits": 6, "process_index": i}
            for test, values in tps.items() for i, v in enumerate(values)]


def test_explain_reads_the_stored_configurations_without_planning(tmp_path, monkeypatch):
    """A folder with configurations.json is explained from it: its meta.json names an engine and a GGUF that do
    not exist (planning again would fail), and the predictions equal those of the planned configurations."""
    monkeypatch.setenv("MOEBENCH_CALIBRATION", str(tmp_path / "calibration"))
    constants = Constants({"crossing_s": 1e-4, "cpu_s_per_byte": 2e-10, "accel_s_per_byte": 1e-10,
                           "kv_s_per_byte": 1e-10, "detour_s": 0.0},
                          {"pass_s": 1e-3, "crossing_s": 1e-4, "cpu_s_per_flop": 1e-11, "accel_s_per_flop": 5e-12},
                          1e-10)
    Calibration("mainline-gone", "rpc-rig", Peaks(1e10, 2e10, 1e9),
                {"llama-bench": ToolCalibration(2, constants, [], {})}).save()
    first, last = _configuration("first-n-experts", n=2), _configuration("last-n-experts", n=2)
    predictor = Predictor.for_configurations([first, last])
    folder = tmp_path / "sweep"
    def stored_tests(conf):
        return {key: test.to_dict() for key, test in planned_tests(predictor, conf, BENCH).items()}

    write_configurations(folder, [configuration_record(first, [["llama-bench"]], stored_tests(first))])
    write_configurations(folder, [configuration_record(last, [], stored_tests(last))])  # adds
    stored = read_configurations(folder)
    assert set(stored) == {first.id, last.id} and stored[first.id]["commands"] == [["llama-bench"]]
    assert stored[first.id]["tests"][key_of_test("tg", 16, 0)]["predicted_tps"] > 0
    (folder / "meta.json").write_text(json.dumps({"config": {
        "models": [{"path": "/nonexistent/tiny.gguf"}], "engines": [{"name": "no-such-engine"}]}}))
    rows = _rows(first, {"pp64": [900.0, 910.0], "tg16": [100.0, 104.0]}) + _rows(last, {"tg16": [90.0, 91.0]})
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    explained = explain_folder(folder)
    assert not explained.problem and explained.calibrations
    got = {(r["placement"], r["test"]): r for _, r in explained.rows.iterrows()}
    assert set(got) == {("first-n-experts(n=2)", "pp64"), ("first-n-experts(n=2)", "tg16"),
                        ("last-n-experts(n=2)", "tg16")}
    for conf in (first, last):
        for kind, tokens in (("pp", 64), ("tg", 16)):
            if (conf.placement.describe(), f"{kind}{tokens}") not in got:
                continue
            _, pred = predictor.prediction(conf, model_test(kind, tokens, 0, conf, BENCH))
            row = got[(conf.placement.describe(), f"{kind}{tokens}")]
            assert row["predicted_tps"] == pytest.approx(pred.tps) and row["predicted_graph_splits"] >= 1
    assert any(p["a"] == "first-n-experts(n=2)" and p["b"] == "last-n-experts(n=2)" for p in explained.pairs)

    (folder / "configurations.json").unlink()  # an older folder: planned again from meta.json, which fails here
    assert explain_folder(folder).problem.startswith("cannot plan the sweep again")


def test_plan_from_a_request_without_bench_yaml(tmp_path, mainline_engine):
    """The planner takes a request built in code: knob axes crossed with the parameter grid, each configuration
    with its id, the rig's port a placeholder; the same ids as the equivalent bench.yaml."""
    request = PlanRequest(models=[ModelSpec(synth="tiny")], engines=[EngineSpec(name="mainline")],
                          tools=["llama-bench"], rpc_rig=RpcRig(),
                          strategies=[StrategySpec(name="first-n-experts", params={"n": [1, 2]})],
                          bench=BenchSettings(ubatch=[256, 512]))
    confs = plan(request)
    assert [(c.params["n"], c.knobs.ubatch) for c in confs] == [(1, 256), (1, 512), (2, 256), (2, 512)]
    assert len({c.id for c in confs}) == 4 and all(not c.error for c in confs)
    assert all(c.knob_args[c.knob_args.index("-ub") + 1] == str(c.knobs.ubatch) for c in confs)
    assert confs[0].target.buffer_type == "RPC0[127.0.0.1:RPC_PORT]"
    assert {c.target.buffer_type for c in plan(replace(request, rpc_endpoints={
        confs[0].engine.name: ["127.0.0.1:50999"]}))} == {RIG}
    (tmp_path / "bench.yaml").write_text(
        "models: [{synth: tiny}]\nengines: [mainline]\ntools: [llama-bench]\nrpc_rig: true\n"
        "strategies: [{name: first-n-experts, params: {n: [1, 2]}}]\nbench: {ubatch: [256, 512]}\n")
    assert [c.id for c in plan(request_from_config(load_config(tmp_path / "bench.yaml")))] == [c.id for c in confs]


def test_flags_applies_knobs(tiny_model, mainline_engine):
    """`moebench flags` plans through the planner: a knob's arguments are printed and its memory predicted."""
    base = ("flags", tiny_model, "first-n-experts", "n=3", "--device", RIG, "--tool", "llama-server", "--json")
    plain = json.loads(run_cli(*base).stdout)
    result = run_cli(*base, "--knob", "cache_type_k=q8_0", "--knob", "ubatch=256")
    assert result.returncode == 0, result.stderr
    knobbed = json.loads(result.stdout)
    assert knobbed["args"] == plain["args"]  # the placement is the same
    ub, ctk = knobbed["knob_args"].index("-ub"), knobbed["knob_args"].index("-ctk")
    assert knobbed["knob_args"][ub + 1] == "256" and knobbed["knob_args"][ctk + 1] == "q8_0"
    assert sum(knobbed["predicted_kv_bytes"].values()) < sum(plain["predicted_kv_bytes"].values())
    line = run_cli(*base[:-1], "--knob", "ubatch=256").stdout.split()
    assert line[:len(plain["args"])] == plain["args"] and line[line.index("-ub") + 1] == "256"
    bad = run_cli(*base, "--knob", "ubatch=zero")
    assert bad.returncode == 2 and "ubatch" in bad.stderr and "Traceback" not in bad.stderr
