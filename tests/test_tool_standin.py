"""The runner's loop without an engine: configurations measured by the stand-in tool (tests/standin_tool.py)
through the runner's own per-process step (`harness.runner.sweep._run_process`: rows, intervals, failed and
skipped rows) in the schedule's rounds, then resumed from the rows. Seconds, no engine."""

from __future__ import annotations

import csv
import json

import pytest

from harness.config import load_config
from harness.cpus import cpu_budget
from harness.engines.discover import Engine
from harness.models import inspect_preset
from harness.plan.memory import MemoryPrediction
from harness.plan.planner import Configuration, ResolvedModel, config_id
from harness.runner.commands import commands
from harness.runner.schedule import Schedule, history_from_rows
from harness.runner.sweep import RunSettings, SweepRun, _run_process
from harness.results.store import ResultsStore
from harness.tools import TOOLS, tool_named
from standin_tool import StandInTool

CONFIG = """
name: stand-in
models: [{synth: tiny}]
engines: [mainline]
bench: {prompt_tokens: [32], gen_tokens: [8], repetitions: 3, processes: 2, ctx: 256}
"""


class _Quiet:
    def begin(self, total, already_done): ...
    def start(self, label): ...
    def result(self, text): ...


@pytest.fixture
def stand_in(monkeypatch):
    tool = StandInTool()
    monkeypatch.setitem(TOOLS, tool.name, tool)
    return tool


@pytest.fixture
def sweep_setup(tmp_path, stand_in):
    (tmp_path / "bench.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "bench.yaml")
    model_file = tmp_path / "tiny.gguf"
    model_file.write_bytes(b"GGUF")  # the rows note its size; the stand-in reads nothing
    model = ResolvedModel("tiny", model_file, "synth:tiny:seed0", inspect_preset("tiny"))
    engine = Engine("stand-in-engine", tmp_path, "mainline", "test", version="0")
    over = MemoryPrediction({"accel0": 2 << 30}, {}, {}, budgets={"accel0": 1 << 30})

    def conf(strategy, **params):
        return Configuration(model, engine, stand_in.name, strategy, params)

    confs = [conf("fast", n=4), conf("slow", n=0), conf("crashes", fail=True), conf("invalid"), conf("too-big")]
    confs[3].error = "cannot place: no such layer"
    confs[4].memory = over
    for c in confs:
        c.id = config_id(config.bench, c)
    return config, {c.id: c for c in confs}


def _sweep(config, confs, folder, processes):
    """What `run_sweep` does once it has planned: the schedule's rounds (resumed from the rows), one process
    of each configuration at a time."""
    store = ResultsStore(folder)
    schedule = Schedule(list(confs), processes, config.bench.until, seed=config.order.seed,
                        shuffle=config.order.random, history=history_from_rows(store.rows()))
    run = SweepRun(RunSettings.of(config), store, schedule, cpu_budget(False), _Quiet(), {})
    order = []
    for round_, ids in schedule.rounds():
        for cid in ids:
            order.append((round_, cid))
            _run_process(run, confs[cid], round_, None)
    return store, order


def _rows(store):
    with open(store.csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rounds_failed_and_skipped_rows_then_resume(sweep_setup, stand_in, tmp_path):
    config, confs = sweep_setup
    by_strategy = {c.strategy: cid for cid, c in confs.items()}
    store, order = _sweep(config, confs, tmp_path / "resumed", processes=2)

    # round 0 runs every configuration, round 1 only those still running, each round in its own seeded order
    assert [cid for r, cid in order if r == 0] == Schedule(list(confs), 2, None, seed=config.order.seed).round(0)
    assert sorted(cid for r, cid in order if r == 1) == sorted([by_strategy["fast"], by_strategy["slow"]])
    # failed before running, skipped, and failed while running: one row each, never run again
    rows = _rows(store)
    once = {r["strategy"]: (r["status"], r["reason"]) for r in rows if r["strategy"] in ("crashes", "invalid",
                                                                                          "too-big")}
    assert once == {"crashes": ("failed", "stand-in failed as asked: exit code 134"),
                    "invalid": ("failed", "cannot place: no such layer"),
                    "too-big": ("skipped: predicted-oom", "predicted 2048 MiB on accel0, budget 1024 MiB")}
    assert sum(r["strategy"] in once for r in rows) == 3
    assert sorted(stand_in.processes) == sorted([f"{by_strategy[s]}.log" for s in ("fast", "slow", "crashes")]
                                                + [f"{by_strategy[s]}.p1.log" for s in ("fast", "slow")])
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted((r["strategy"], r["process_index"], r["test"]) for r in ok) == sorted(
        (s, str(p), t) for s in ("fast", "slow") for p in (0, 1) for t in ("pp32", "tg8"))
    # each row's command is the tool's own argument list
    fast = confs[by_strategy["fast"]]
    assert all(json.loads(r["command"]) == commands(fast, config.bench)[0] for r in ok if r["strategy"] == "fast")

    # resumed with a third process: only round 2 runs, of the configurations still running
    stand_in.processes.clear()
    store, order = _sweep(config, confs, tmp_path / "resumed", processes=3)
    assert sorted(order) == sorted([(2, by_strategy["fast"]), (2, by_strategy["slow"])])
    assert sorted(stand_in.processes) == sorted(f"{by_strategy[s]}.p2.log" for s in ("fast", "slow"))

    # the same rows as one uninterrupted three-process sweep: the stand-in measures each process the same
    _, _ = _sweep(config, confs, tmp_path / "straight", processes=3)
    straight = _rows(ResultsStore(tmp_path / "straight"))

    def measured(rows):
        return sorted((r["run_id"], r["status"], r["tps_mean"]) for r in rows)

    def intervals(rows):  # a resumed interval uses the stored means, rounded to 3 decimals: equal to within that
        return [pytest.approx((float(r["tps_ci_low"]), float(r["tps_ci_high"])), abs=0.005)
                for r in sorted(rows, key=lambda r: r["run_id"]) if r["status"] == "ok"]

    assert measured(_rows(store)) == measured(straight)
    assert [(float(r["tps_ci_low"]), float(r["tps_ci_high"])) for r in sorted(_rows(store), key=lambda r: r["run_id"])
            if r["status"] == "ok"] == intervals(straight)
    last = [r for r in straight if r["process_index"] == "2" and r["status"] == "ok"]
    assert len(last) == 4 and all(float(r["tps_ci_low"]) < float(r["tps_mean"]) * 1.05 for r in last)
    fast_tg = [float(r["tps_mean"]) for r in straight if r["strategy"] == "fast" and r["test"] == "tg8"]
    slow_tg = [float(r["tps_mean"]) for r in straight if r["strategy"] == "slow" and r["test"] == "tg8"]
    assert len(fast_tg) == 3 and min(fast_tg) > max(slow_tg)


def test_an_unknown_tool_is_named_with_a_suggestion():
    with pytest.raises(Exception, match=r"unknown tool 'llama-servr' \(did you mean 'llama-server'\?\)"):
        tool_named("llama-servr")


def test_a_run_writes_its_devices(sweep_setup, stand_in, tmp_path, monkeypatch):
    """devices.csv of one process on two GPUs (the scripted fake NVML of test_telemetry): each test's row per
    GPU with that GPU's own VRAM peak, PCIe and utilization, and the plan's per-device bytes; runs.csv keeps the
    aggregate (the fullest GPU) and no per-GPU column."""
    import sys

    from harness.results.reader import read_devices, read_runs
    from harness.telemetry import Sampler
    from test_telemetry import FakeGpu, fake_pynvml

    config, confs = sweep_setup
    busy, light = FakeGpu(), FakeGpu()
    busy.set("pp")
    light.set("tg")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([busy, light]))
    stand_in.window_s = 0.2
    cid, conf = next((cid, c) for cid, c in confs.items() if c.strategy == "fast")
    conf.predicted_buffers = {"CPU": 1000, "accel0": 2000}
    store = ResultsStore(tmp_path / "gpus")
    schedule = Schedule([cid], 1, None, seed=0)
    with Sampler(lambda: None, hz=50) as sampler:
        run = SweepRun(RunSettings.of(config), store, schedule, cpu_budget(False), _Quiet(), {})
        _run_process(run, conf, 0, sampler)
    runs = read_runs(store.folder)
    assert list(runs["test"]) == ["pp32", "tg8"] and list(runs["vram_peak_mib"]) == [6100, 6100]
    assert not any("gpu0" in c or "gpu1" in c for c in runs.columns)
    devices = read_devices(store.folder)
    assert set(devices["run_id"]) == set(runs["run_id"])
    for run_id in runs["run_id"]:
        mine = devices[devices["run_id"] == run_id].set_index("device")
        assert list(mine.index) == ["gpu0", "gpu1", "CPU", "accel0"]
        assert list(mine.loc[["gpu0", "gpu1"], "gpu_index"]) == [0, 1]
        assert list(mine.loc[["gpu0", "gpu1"], "vram_peak_mib"]) == [6000, 6100]
        assert list(mine.loc[["gpu0", "gpu1"], "pcie_rx_mib_s_mean"]) == [500, 100]
        assert list(mine.loc[["gpu0", "gpu1"], "gpu_util_pct_mean"]) == [90, 40]
        assert list(mine.loc[["CPU", "accel0"], "predicted_model_bytes"]) == [1000, 2000]
