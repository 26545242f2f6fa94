"""SIGKILL of the harness mid-sweep, then `--resume`: the same rows as an uninterrupted sweep, no duplicates,
no torn row, and no engine left running."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import psutil

from conftest import REPO, run_cli

CONFIG = """
name: resumable
models: [{synth: tiny}]
engines: [mainline]
tools: [llama-bench]
rpc_rig: true
bench: {prompt_tokens: [32], gen_tokens: [8], repetitions: 2, processes: 2, ctx: 256}
strategies:
  - all-gpu
  - cpu-moe
  - name: first-n-experts
    params: {n: "1..4"}
"""


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _keys(rows):
    return sorted((r["config_id"], r["process_index"], r["test"], r["status"]) for r in rows)


def test_killed_sweep_resumes_to_the_same_rows(mainline_engine, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG)
    full = run_cli("run", config, "--out", tmp_path / "full")
    assert full.returncode == 0, full.stderr
    expected = _rows(tmp_path / "full" / "resumable" / "runs.csv")
    assert len(expected) == 6 * 2 * 2  # configurations x tests x processes

    out = tmp_path / "killed"
    csv_path = out / "resumable" / "runs.csv"
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (csv_path.exists() and len(_rows(csv_path)) >= 3):
        assert harness.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    children = [p.pid for p in psutil.Process(harness.pid).children(recursive=True)]
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    partial = _rows(csv_path)
    assert 3 <= len(partial) < len(expected)
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in children):
        assert time.monotonic() < deadline, "an engine or rpc-server outlived the harness"
        time.sleep(0.05)

    refused = run_cli("run", config, "--out", out)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_cli("run", config, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = _rows(csv_path)
    assert _keys(rows) == _keys(expected)
    assert len({(r["config_id"], r["process_index"], r["test"]) for r in rows}) == len(rows)  # no duplicates


def test_sigterm_of_a_running_sweep_leaves_nothing_running(mainline_engine, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.replace("repetitions: 2", "repetitions: 50"))
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(tmp_path)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children = []
    while not any(p.name() == "llama-bench" for p in children):
        assert harness.poll() is None and time.monotonic() < deadline
        children = psutil.Process(harness.pid).children(recursive=True)
        time.sleep(0.05)
    assert any(p.name() == "ggml-rpc-server" for p in children)
    affinity = {p.name(): p.cpu_affinity() for p in children if p.name() in ("llama-bench", "ggml-rpc-server")}
    assert not set(affinity["llama-bench"]) & set(affinity["ggml-rpc-server"])  # disjoint CPU sets
    harness.send_signal(signal.SIGTERM)
    assert harness.wait(timeout=30) != 0
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children):
        assert time.monotonic() < deadline, "an engine or rpc-server outlived the harness"
        time.sleep(0.05)
