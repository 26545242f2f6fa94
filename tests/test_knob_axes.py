"""Knob axes run for real on the RPC rig with both engines: `ubatch x first-n-experts n`, `threads x cpu-moe`
and `load_mode x last-n-layers-cpu`, through llama-bench, llama-server and ik's llama-sweep-bench. Each knob is checked
against what the engine itself says it used: its log (`n_ubatch`, `n_threads`, the load mode) or llama-bench's
JSON, and the model buffers it reported (a mapped CPU buffer is a span of the file, an allocated one the sum of
its tensors). Short tests: prompt 64, generation 16, one process, one repetition."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from conftest import run_cli
from harness.plan.load_report import agrees, engine_settings
from harness.results.reader import by_device, read_devices
from harness.units import MIB

HEAD = """models: [{synth: tiny}]
engines: [mainline, ik]
rpc_rig: true
bench: {prompt_tokens: [64], gen_tokens: [16], repetitions: 1, processes: 1, ctx: 128, %s}
"""


def sweep(tmp_path: Path, name: str, body: str, knobs: str) -> tuple[Path, list[dict]]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"name: {name}\n" + HEAD % knobs + body)
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / name
    return folder, list(csv.DictReader((folder / "runs.csv").open()))


def log_of(folder: Path, row: dict) -> str:
    return (folder / row["log_file"]).read_text(errors="replace")


def bench_json(folder: Path, row: dict) -> list[dict]:
    """llama-bench's own report of each test it ran (one JSON file per test process)."""
    log = folder / row["log_file"]
    return [rec for path in sorted(log.parent.glob(log.stem + ".*.json")) for rec in json.loads(path.read_text())]


def _count(cpus: str) -> int:
    """CPUs in the kernel's list format (`0-3,6`)."""
    spans = [part.split("-") for part in cpus.split(",") if part]
    return sum(int(span[-1]) - int(span[0]) + 1 for span in spans)


def by_engine_tool(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        out.setdefault((row["engine_dialect"], row["tool"]), []).append(row)
    return out


def test_ubatch_by_first_n_experts(tmp_path, mainline_engine, ik_engine):
    folder, rows = sweep(tmp_path, "ubatch", """tools: [llama-bench, llama-server, llama-sweep-bench]
strategies:
  - name: first-n-experts
    params: {n: [1, 2]}
""", "ubatch: [16, 32], load_mode: no-mmap")
    groups = by_engine_tool(rows)
    assert all(r["status"] == "failed" and "cannot place" in r["reason"] for r in groups["ik", "llama-bench"])
    assert all("has no llama-sweep-bench" in r["reason"] for r in groups["mainline", "llama-sweep-bench"])
    for key in (("mainline", "llama-bench"), ("mainline", "llama-server"), ("ik", "llama-server"),
                ("ik", "llama-sweep-bench")):
        measured = groups[key]
        assert all(r["status"] == "ok" for r in measured), [r["reason"] for r in measured]
        assert {(json.loads(r["strategy_params"])["n"], r["ubatch"]) for r in measured} \
            == {(n, ub) for n in (1, 2) for ub in ("16", "32")}, key  # the grid: every n with every ubatch
        for row in measured:
            ub, log = int(row["ubatch"]), log_of(folder, row)
            command = json.loads(row["command"])
            assert command[command.index("-ub") + 1] == str(ub)
            # the engine's own context: pp runs in micro-batches of ub tokens (tg's context is smaller)
            assert max(int(v) for v in re.findall(r"n_ubatch\s+=\s+(\d+)", log)) == ub, key
            if row["tool"] == "llama-bench":
                assert {rec["n_ubatch"] for rec in bench_json(folder, row)} == {ub}
                assert {rec["load_mode"] for rec in bench_json(folder, row)} == {"none"}
            if row["engine_dialect"] == "mainline":
                assert engine_settings(log)["load_mode"] == "none"
            if row["tool"] == "llama-sweep-bench":
                assert f"pp{ub}" in {r["test"] for r in measured if r["config_id"] == row["config_id"]}


def test_threads_by_cpu_moe(tmp_path, mainline_engine, ik_engine):
    folder, rows = sweep(tmp_path, "threads", """tools: [llama-bench, llama-server]
strategies: [cpu-moe]
""", "threads: [1, 2]")
    measured = [r for r in rows if not (r["engine_dialect"] == "ik" and r["tool"] == "llama-bench")]
    assert len(measured) == 3 * 2 * 2 and all(r["status"] == "ok" for r in measured)
    for row in measured:
        threads = int(row["threads"])
        command = json.loads(row["command"])
        assert command[command.index("-t") + 1] == str(threads)
        if row["tool"] == "llama-bench":
            assert {rec["n_threads"] for rec in bench_json(folder, row)} == {threads}
        else:
            assert engine_settings(log_of(folder, row))["n_threads"] == str(threads)
        # the rig gives the engine one core here: two threads share it, and the row says so
        assert ("oversubscribed" in row["warnings"]) == (threads > _count(row["cpus"]))


def test_load_mode_by_last_layers_on_cpu(tmp_path, mainline_engine, ik_engine):
    """The last two layers and the embeddings in RAM, the layers between them on the RPC device. ik moves
    weights to an RPC device with -ot only (no tensor goes to the CPU by override), so it maps the file unless
    told not to: the CPU model buffer is the span of the file from the embeddings to the last layer (mmap) or
    the sum of its tensors (no-mmap), as predicted for each load mode, in both engines."""
    folder, rows = sweep(tmp_path, "load", """tools: [llama-bench, llama-server]
strategies:
  - name: last-n-layers-cpu
    params: {n: 2}
""", "load_mode: [mmap, no-mmap]")
    measured = [r for r in rows if not (r["engine_dialect"] == "ik" and r["tool"] == "llama-bench")]
    assert len(measured) == 3 * 2 * 2 and all(r["status"] == "ok" for r in measured), rows
    cpu = {}
    devices = read_devices(folder)
    predicted_of, actual_of = by_device(devices, "predicted_model_bytes"), by_device(devices, "actual_model_bytes")
    for row in measured:
        predicted, actual = predicted_of[row["run_id"]], actual_of[row["run_id"]]
        assert agrees(predicted["CPU"] / MIB, actual["CPU"] / MIB), row
        cpu[row["engine_dialect"], row["tool"], row["load_mode"]] = actual["CPU"]
        if row["engine_dialect"] == "mainline":
            expected = {"mmap": "mmap", "no-mmap": "none"}[row["load_mode"]]
            assert engine_settings(log_of(folder, row))["load_mode"] == expected
    for engine, tool in {(e, t) for e, t, _ in cpu}:
        assert cpu[engine, tool, "no-mmap"] < cpu[engine, tool, "mmap"]  # the span holds the RPC layers between
