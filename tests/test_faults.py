"""Fault injection with the real engines: an engine SIGKILLed mid-run, a server that never gets healthy.
Each becomes a failed row with the reason, and the sweep goes on."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import psutil

from conftest import REPO, run_cli


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_engine_killed_mid_run_is_a_failed_row_and_the_sweep_goes_on(mainline_engine, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text("""
name: killed
models: [{synth: tiny}]
engines: [mainline]
tools: [llama-bench]
rpc_rig: true
bench: {prompt_tokens: [512], gen_tokens: [64], repetitions: 30, processes: 1}
strategies: [all-gpu]
""")
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(tmp_path)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    bench = None
    while bench is None:
        assert time.monotonic() < deadline and harness.poll() is None
        bench = next((p for p in psutil.Process(harness.pid).children(recursive=True)
                      if p.name() == "llama-bench"), None)
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(bench.pid, signal.SIGKILL)
    out, err = harness.communicate(timeout=120)
    assert harness.returncode == 0, err
    rows = _rows(tmp_path / "killed" / "runs.csv")
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert rows[0]["reason"].startswith("killed by signal SIGKILL")


def test_server_never_healthy_is_a_failed_row(mainline_engine, tmp_path):
    """A run limit of 1 ms: the one health probe meets a server that has only just been started (the tiny model
    loads in ~40 ms, so with 50 ms the server was sometimes healthy, and then timed out in its warm-up: 3 of 10
    runs failed on a different reason)."""
    config = tmp_path / "bench.yaml"
    config.write_text("""
models: [{synth: tiny}]
engines: [mainline]
tools: [llama-server]
bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1}
timeouts: {run_s: 0.001}
""")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out" / "default" / "runs.csv")
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert "not healthy after" in rows[0]["reason"]
    leftovers = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "llama-server" and proc.cwd().startswith(str(tmp_path)):
                leftovers.append(proc.pid)  # the server runs in the sweep's log folder
        except psutil.Error:
            continue
    assert not leftovers


def test_segfaulting_engine_is_a_failed_row(ik_engine, tmp_path):
    """ik's server segfaults when -ot sends weights to an RPC device while -ngl is 0 (docs/ENGINE_FLAGS.md):
    a real crash, forced here through engine_args."""
    config = tmp_path / "bench.yaml"
    config.write_text("""
models: [{synth: tiny}]
engines: [ik]
tools: [llama-server]
rpc_rig: true
engine_args: {ik: ["-ngl", "0"]}
bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1, ctx: 256}
strategies: [all-gpu, cpu-moe]
timeouts: {run_s: 60}
""")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out" / "default" / "runs.csv")
    crashed = [r for r in rows if r["status"] == "failed"]
    assert crashed and all("SIGSEGV" in r["reason"] for r in crashed), [r["reason"][:200] for r in rows]
