"""`moebench plan`'s estimate of the sweep's wall time (issue 20, `harness.perf.eta`): what it counts, and on the RPC
rig that it is of the measured time's order (a factor of two: wrong units or a missing term, not noise). How
close it comes (the issue's goal: within 25%) is `benchmarks/eta_accuracy.py`'s to say, measured alone: a timed
assertion in the suite fails on a busy machine."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conftest import run_cli, run_cold_cli
from harness.config import load_config
from harness.perf.eta import EtaConstants, estimate_sweep

SWEEP = """\
name: {name}
output: {out}
models:
  - synth: tiny
engines:
  - mainline
tools: [{tools}]
rpc_rig: true
strategies:
  - all-gpu
  - cpu-moe
  - name: first-n-experts
    params: {{n: [2]}}
bench:
  prompt_tokens: [512]
  gen_tokens: [128]
  repetitions: 1
  processes: 2
  ctx: 1024
timeouts:
  run_s: 120
"""


def _sweep(tmp_path, name="eta", tools="llama-bench", extra="") -> "Path":
    path = tmp_path / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, out=tmp_path / "results", tools=tools) + extra)
    return path


def _seconds(text: str) -> float:
    found = re.search(r"estimated wall time: (?:(\d+) h )?(?:(\d+) min )?(?:(\d+) s)?", text)
    assert found, text
    h, m, s = (int(x or 0) for x in found.groups())
    return h * 3600 + m * 60 + s


def test_the_estimate_counts_what_runs(mainline_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MOEBENCH_CALIBRATION", str(tmp_path / "no-calibration"))
    config = load_config(_sweep(tmp_path, tools="llama-bench, llama-server", extra="vram_budget_mib: 23\n"))
    found = estimate_sweep(config)
    assert (found.configurations, found.not_run, found.processes) == (4, 2, 8)  # all-gpu fits in neither tool, 23 MiB
    assert found.rough == 4 and "rough guesses" in found.describe() and not found.adaptive
    slow = estimate_sweep(config, constants=EtaConstants(read_bytes_s=1e6))  # a 16 MiB model read at 1 MB/s
    launches = 2 * 2 + 2 * 1  # per process: llama-bench one per test (2 configurations), llama-server one
    assert slow.seconds - found.seconds == pytest.approx(2 * launches * 16.4 * (1 - 1 / 2000), rel=0.05)
    shown = run_cli("plan", config.source_path, env={"MOEBENCH_CALIBRATION": str(tmp_path / "no-calibration")})
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert _seconds(shown.stdout) == pytest.approx(found.seconds, abs=1.5)
    assert "(8 processes of 4 configurations; 2 will not run)" in shown.stdout
    # a calibration of llama-bench alone: llama-server's configurations are still rough guesses
    from harness.perf.calibration import Calibration, ToolCalibration, device_key
    from harness.perf.eta import ROUGH_RIG
    from harness.plan.planner import plan
    from harness.plan.request import request_from_config

    conf = next(c for c in plan(request_from_config(config)) if c.target is not None and c.tool == "llama-bench")
    Calibration(conf.engine.name, device_key(conf.target.buffer_type), None,
                {"llama-bench": ToolCalibration(conf.threads, ROUGH_RIG, [], {})}).save()
    assert estimate_sweep(config).rough == 2


def test_the_estimate_is_near_the_measured_time_on_the_rig(rig_calibration, tmp_path):
    env, _ = rig_calibration
    path = _sweep(tmp_path)
    planned = run_cli("plan", path, env=env)
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "rough" not in planned.stdout  # llama-bench on the rig is calibrated
    estimate = _seconds(planned.stdout)
    started = time.monotonic()
    ran = run_cold_cli("run", path, env=env)  # timed as a user starts it: the interpreter and imports too
    measured = time.monotonic() - started
    assert ran.returncode == 0, ran.stderr[-2000:]
    print(f"estimated {estimate:.0f} s, measured {measured:.1f} s")
    assert 0.5 * measured <= estimate <= 2 * measured, (estimate, measured)


def test_a_launch_is_timed_from_the_calibrations_own_rows():
    """`measured_launch_s`'s rule on a stored sweep: each process's seconds less its tests' tokens at their
    measured speed, per launch; positive and below the process's own seconds; read from the folders of the
    tool's own calibration, none for a tool without them."""
    from harness.perf.calibration import Calibration, ToolCalibration
    from harness.perf.eta import measured_launch_s
    from harness.perf.model import Constants
    from harness.results.reader import read_runs

    folder = Path(__file__).parent / "data" / "sweep-v2"
    rows = read_runs(folder)
    constants = Constants(tg={}, pp={}, bus_s_per_byte=0.0)
    tools = {tool: ToolCalibration(2, constants, [], {}, [str(folder)]) for tool in ("llama-bench", "llama-server")}
    tools["llama-sweep-bench"] = ToolCalibration(2, constants, [], {}, [str(folder)])
    cal = Calibration("mainline", "rpc-rig", None, tools)
    for tool in ("llama-bench", "llama-server"):
        launch = measured_launch_s(cal, tool)
        assert launch is not None and 0 < launch < rows[rows["tool"] == tool]["duration_s"].median()
    assert measured_launch_s(cal, "llama-sweep-bench") is None  # no rows of that tool in its folder
    cal.tools["llama-server"].results = []
    assert measured_launch_s(cal, "llama-server") is None


def test_calibrating_one_tool_keeps_the_others(tmp_path, monkeypatch):
    """`moebench calibrate --tool llama-server` after a llama-bench calibration keeps llama-bench's constants
    and its folder (the ETA times llama-bench's launches from it), and the format before per-tool folders loads
    with the shared folder list as every tool's."""
    from harness.perf.calibration import Calibration, ToolCalibration, load_calibration
    from harness.perf.model import Constants

    monkeypatch.setenv("MOEBENCH_CALIBRATION", str(tmp_path))
    bench = ToolCalibration(2, Constants(tg={"crossing_s": 1.0}, pp={}, bus_s_per_byte=0.0), [], {}, ["a"])
    Calibration("mainline", "rpc-rig", None, {"llama-bench": bench}).keeping(None).save()
    server = ToolCalibration(2, Constants(tg={"crossing_s": 2.0}, pp={}, bus_s_per_byte=0.0), [], {}, ["b"])
    earlier = load_calibration("mainline", "rpc-rig")
    Calibration("mainline", "rpc-rig", None, {"llama-server": server}).keeping(earlier).save()
    both = load_calibration("mainline", "rpc-rig")
    assert set(both.tools) == {"llama-bench", "llama-server"} and both.results == "a, b"
    assert both.tools["llama-bench"].constants.tg["crossing_s"] == 1.0 and both.tools["llama-bench"].results == ["a"]
    again = ToolCalibration(2, Constants(tg={"crossing_s": 3.0}, pp={}, bus_s_per_byte=0.0), [], {}, ["c"])
    Calibration("mainline", "rpc-rig", None, {"llama-bench": again}).keeping(both).save()
    assert load_calibration("mainline", "rpc-rig").tools["llama-bench"].constants.tg["crossing_s"] == 3.0
    old = both.to_dict()
    for found in old["tools"].values():
        del found["results"]
    assert Calibration.from_dict(old).tools["llama-server"].results == ["a", "b"]


def test_a_launch_leaves_out_the_warm_ups_the_estimate_adds():
    """The estimate adds each test's warm-up itself (`process_seconds`), so the launch timed from a calibration's
    rows must not hold them too: per process, duration = launches x launch + tests + warm-ups (mainline's
    llama-bench: the whole prompt again before a prompt test, one token before a generation test, at the test's
    speed; llama-server: 16 + 4 tokens once)."""
    from harness.perf.eta import _launches_in
    from harness.results.reader import read_runs

    folder = Path(__file__).parent / "data" / "sweep-v2"
    rows = read_runs(folder)
    for tool, launches in (("llama-bench", 2), ("llama-server", 1)):
        ok = rows[(rows["status"] == "ok") & (rows["tool"] == tool)]
        found = sorted(_launches_in(folder, tool))
        expected = []
        for _, process in ok.groupby(["config_id", "process_index"]):
            pp = process[process["n_prompt"] > 0].iloc[0]
            tg = process[process["n_gen"] > 0].iloc[0]
            tests = (pp["repetitions"] * pp["n_prompt"] / pp["tps_mean"]
                     + tg["repetitions"] * tg["n_gen"] / tg["tps_mean"])
            warm = pp["n_prompt"] / pp["tps_mean"] + 1 / tg["tps_mean"] if tool == "llama-bench" else \
                16 / pp["tps_mean"] + 4 / tg["tps_mean"]
            expected.append((process["duration_s"].iloc[0] - tests - warm) / launches)
        assert found == pytest.approx(sorted(expected), rel=1e-9)


def test_llama_bench_warms_up_as_each_engine_does():
    """mainline b11434 runs the whole prompt once before a prompt test's repetitions, ik one token; both one
    generated token before a generation test."""
    from harness.perf.eta import bench_warmup_tokens

    assert bench_warmup_tokens("mainline", 512) == (512, 0)
    assert bench_warmup_tokens("ik", 512) == (0, 1)
    assert bench_warmup_tokens("mainline", 0) == bench_warmup_tokens("ik", 0) == (0, 1)
