"""Memory in all three parts: the engines' own KV / recurrent-state / compute buffer lines parsed from real logs,
the predicted KV cache and compute buffers against them end to end (`moebench run` on the tiny model with the
RPC rig), and `moebench plan` showing the three parts per device."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from harness.models import inspect_model, synthetic_model
from harness.plan.load_report import parse_report
from harness.plan.memory import MemorySettings, padded_context, predict_memory
from harness.plan.placement import CPU, build_placement
from harness.results.reader import by_device, read_devices, read_records
from harness.tools.server_process import LlamaServer
from harness.units import MIB

TIGHT_MIB = 0.01  # the engines print MiB with two decimals


def test_recurrent_state_lines_are_their_own_part():
    """mainline's `llama_memory_recurrent` line (its printf format, src/llama-memory-recurrent.cpp) is read as
    recurrent state, beside the KV cache of a hybrid model, and both count as the context's state."""
    log = "\n".join([
        "llama_model_loader: loaded meta data with 30 key-value pairs",
        "load_tensors:          CPU model buffer size =    12.00 MiB",
        "llama_context: constructing llama_context",
        "llama_kv_cache:        CPU KV buffer size =     4.00 MiB",
        "llama_memory_recurrent:        CPU RS buffer size =     0.27 MiB",
        "llama_memory_recurrent: size =    0.27 MiB (     1 cells,   6 layers,  1 seqs   0 rs_seq), R (f32):    0.02 MiB",
        "sched_reserve:        CPU compute buffer size =     9.51 MiB",
    ])
    report = parse_report(log)
    assert report.kv_bytes_by_device == {"CPU": 4 * MIB}
    assert report.rs_bytes_by_device == {"CPU": round(0.27 * MIB)}
    assert report.state_bytes_by_device == {"CPU": 4 * MIB + round(0.27 * MIB)}
    assert report.compute_bytes_by_device == {"CPU": round(9.51 * MIB)}


def test_context_padding_per_engine():
    assert padded_context(300, "mainline", flash_attn=False) == 512       # mainline: always 256
    assert padded_context(300, "ik", flash_attn=True) == 512
    assert padded_context(300, "ik", flash_attn=False) == 320             # ik without flash attention: 32


def test_plan_shows_model_kv_and_compute_per_device(tmp_path, mainline_engine):
    path = tmp_path / "bench.yaml"
    path.write_text("models: [{synth: tiny}]\nengines: [mainline]\ntools: [llama-server]\nrpc_rig: true\n"
                    "strategies: [{name: first-n-experts, params: {n: 2}}]\nbench: {ctx: 4096}\n")
    result = run_cli("plan", path)
    assert result.returncode == 0, result.stderr
    assert "model + KV + compute" in result.stdout
    rows = json.loads(run_cli("plan", path, "--json").stdout)
    memory = rows[0]["memory"]
    assert set(memory["kv_mib"]) == {"accel0"} and memory["kv_mib"]["accel0"] == pytest.approx(16.0)  # 8 layers x 4096 x 2 heads x 64 x 2 B x (K + V)
    assert set(memory["compute_mib"]) == {"cpu", "accel0"}
    for device in ("CPU", "RPC0[127.0.0.1:RPC_PORT]"):
        line = next(line for line in result.stdout.splitlines() if f"{device}:" in line)
        assert line.count("+") >= 2, line


def _sweep_rows(tmp_path, engine: str, bench: str, strategies: str) -> list[dict]:
    path = tmp_path / "bench.yaml"
    path.write_text(f"models: [{{synth: tiny}}]\nengines: [{engine}]\ntools: [llama-server]\nrpc_rig: true\n"
                    f"strategies: {strategies}\ntelemetry: {{enabled: false}}\nbench: {bench}\n")
    result = run_cli("run", path, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "default"
    devices = read_devices(folder)
    parts = {f"{side}_{part}": by_device(devices, f"{side}_{part}_bytes")
             for part in ("kv", "compute") for side in ("predicted", "actual")}
    return [{**row, **{name: found.get(row["run_id"], {}) for name, found in parts.items()}}
            for row in read_records(folder)]


@pytest.mark.engine  # the engine fixture is asked for by name, out of the conftest hook's sight
@pytest.mark.parametrize("engine_name", ["mainline", "ik"])
def test_rows_carry_predicted_and_reported_kv_and_compute(engine_name, tmp_path, request):
    """`moebench run` (llama-server on the RPC rig, both engines): each row's KV cache equals the engine's report
    to its print rounding, its compute buffers within 10% and never under by more than 5%, on every device."""
    request.getfixturevalue(f"{engine_name}_engine")
    rows = _sweep_rows(tmp_path, engine_name,
                       "{prompt_tokens: [8], gen_tokens: [4], repetitions: 1, ctx: 16384, cache_type_k: q8_0, "
                       "cache_type_v: q8_0}", "[all-gpu, {name: first-n-experts, params: {n: 2}}]")
    assert rows and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    for row in rows:
        kv = row["predicted_kv"], row["actual_kv"]
        assert set(kv[0]) == set(kv[1]), (row["strategy"], kv)
        for device, n_bytes in kv[1].items():
            assert abs(kv[0][device] - n_bytes) <= TIGHT_MIB * MIB, (row["strategy"], device, kv)
        compute = row["predicted_compute"], row["actual_compute"]
        assert set(compute[0]) == set(compute[1]), (row["strategy"], compute)
        for device, n_bytes in compute[1].items():
            ratio = compute[0][device] / n_bytes
            assert 0.95 <= ratio <= 1.10, (row["strategy"], device, compute)


@pytest.mark.parametrize("flash_attn", [True, False])
def test_cpu_compute_buffer_follows_the_engine(mainline_engine, tmp_path, flash_attn):
    """Everything on the CPU (llama-server -ngl 0, a 4096 context, ub 256): the predicted compute buffer against
    the engine's line; without flash attention the scores of one micro-batch against the whole context
    dominate it."""
    path = synthetic_model("tiny")
    model = inspect_model(path)
    log = tmp_path / "server.log"
    with LlamaServer(mainline_engine.tool("llama-server"), path,
                     ["-c", "4096", "-fa", "on" if flash_attn else "off", "-ngl", "0", "-ub", "256", "-lv", "4"],
                     log_path=log):
        pass
    report = parse_report(log.read_text())
    cpu = build_placement("cpu", {}, model, layer_devices=[CPU] * model.n_layers, output_device=CPU)
    settings = MemorySettings(n_ctx=4096, n_ubatch=256, flash_attn=flash_attn)
    predicted = predict_memory(cpu, model, settings)
    actual = report.compute_bytes_by_device["CPU"]
    assert 0.95 <= predicted.compute_bytes[CPU] / actual <= 1.10, (predicted.compute_bytes[CPU] / MIB, actual / MIB)
    assert abs(predicted.kv_bytes[CPU] - report.state_bytes_by_device["CPU"]) <= TIGHT_MIB * MIB


def test_a_layer_kind_without_a_modelled_graph_gets_the_coarse_estimate():
    """A layer the reserve graph does not know (here: no K projection, as in latent attention) must not stop
    the planner: its compute buffers come from the coarse per-token estimate, on the same devices."""
    from dataclasses import replace

    from harness.models import inspect_preset
    from harness.plan.reserve_graph import graph_known as _graph_known
    from strategies.registry import get_strategy

    tiny = inspect_preset("tiny")
    odd = replace(tiny, tensors=[t for t in tiny.tensors if t.name != "blk.0.attn_k.weight"])
    assert _graph_known(tiny) and not _graph_known(odd)
    settings = MemorySettings(n_ctx=4096, n_ubatch=512)
    modelled, coarse = (predict_memory(get_strategy("all-gpu").placement(m, {}), m, settings).compute_bytes
                        for m in (tiny, odd))
    assert set(coarse) == set(modelled) == {"cpu", "accel0"}
    assert all(b > 0 for b in coarse.values())


@pytest.mark.engine  # asked for by name, as above
@pytest.mark.parametrize("engine_name", ["mainline", "ik"])
def test_llama_bench_kv_and_compute_lines_as_predicted(engine_name, tmp_path, request):
    """llama-bench -v (a context per test) on the CPU: the KV and compute lines of both engines parsed, and
    equal to the prediction for the context each engine really allocates (64 prompt tokens: mainline pads the
    context to 256 after bounding the batch by the unpadded one, ik pads first)."""
    from harness import procs

    engine = request.getfixturevalue(f"{engine_name}_engine")
    path = synthetic_model("tiny")
    model = inspect_model(path)
    log = tmp_path / "bench.log"
    fa = "on" if engine_name == "mainline" else "1"
    result = procs.run([str(engine.tool("llama-bench")), "-m", str(path), "-p", "64", "-n", "0", "-r", "1",
                        "-ngl", "0", "-fa", fa, "-t", "1", "-v"], timeout_s=180, log_path=log)
    assert result.ok, result.output_tail
    report = parse_report(log.read_text())
    n_ctx = padded_context(64, engine.dialect)
    n_ubatch = 64 if engine_name == "mainline" else n_ctx
    cpu = build_placement("cpu", {}, model, layer_devices=[CPU] * model.n_layers, output_device=CPU)
    predicted = predict_memory(cpu, model, MemorySettings(n_ctx=n_ctx, n_ubatch=n_ubatch, dialect=engine.dialect))
    assert abs(predicted.kv_bytes[CPU] - report.state_bytes_by_device["CPU"]) <= TIGHT_MIB * MIB
    actual = report.compute_bytes_by_device["CPU"]
    assert 0.95 <= predicted.compute_bytes[CPU] / actual <= 1.10, (predicted.compute_bytes[CPU] / MIB, actual / MIB)
