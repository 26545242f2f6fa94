"""The engines' own load reports, parsed, against the model buffer sizes predicted from the GGUF's tensor table.

Every test runs a real engine (llama-bench -v, llama-server, ik's llama-sweep-bench) on a real synthetic model,
with the engine's own RPC server on loopback as the second device. Predictions must match what the engine
printed to within its rounding (0.01 MiB), much tighter than `agrees`' default 2% / 1 MiB.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness import procs
from harness.engines.rpc import RpcServer
from harness.models import inspect_model, presets, synthetic_model, write_synthetic_model
from harness.plan.load_report import EngineReport, agrees, device_of_buffer, parse_load_log, parse_report
from harness.plan.model_buffers import (
    engine_maps_weights, expected_model_buffer_bytes, mainline_repacked, mapped_span,
)
from harness.tools.server_process import LlamaServer
from harness.units import MIB

pytestmark = pytest.mark.engine

EXPS_12 = r"blk\.[1-2]\.ffn_.*_exps\.weight"
TIGHT = dict(rel=0.0, abs_mib=0.01)  # the engines print MiB with two decimals


@pytest.fixture(scope="module")
def models(tiny_model):
    return {"tiny": inspect_model(tiny_model), "tiny-glm": inspect_model(synthetic_model("tiny-glm"))}


@pytest.fixture(scope="module")
def mainline_rpc(mainline_engine):
    with RpcServer(mainline_engine) as rpc:
        yield rpc.endpoint


@pytest.fixture(scope="module")
def ik_rpc(ik_engine):
    with RpcServer(ik_engine) as rpc:
        yield rpc.endpoint


def placement(model, *, first_gpu_layer: int | None, output_on_accel: bool, overrides=()) -> dict[str, str]:
    """tensor -> "cpu"/"accel": layers >= first_gpu_layer (None: none) and optionally the output layer run on
    the accelerator, token_embd on the CPU; then the first matching (pattern, device) override wins, searched
    anywhere in the name as both engines do (std::regex_search)."""
    out = {}
    for t in model.tensors:
        if t.layer is not None:
            device = "accel" if first_gpu_layer is not None and t.layer >= first_gpu_layer else "cpu"
        else:
            device = "accel" if output_on_accel and not t.name.startswith("token_embd") else "cpu"
        for pattern, dev in overrides:
            if re.search(pattern, t.name):
                device = dev
                break
        out[t.name] = device
    return out


def reported(report: EngineReport) -> dict[str, int]:
    """The report's model bytes with devices named as in `placement`."""
    return {("cpu" if d == "CPU" else "accel"): n for d, n in report.model_bytes_by_device.items()}


def assert_matches(predicted: dict[str, int], report: EngineReport) -> None:
    got = reported(report)
    assert set(got) == set(predicted), (predicted, got)
    for device, n_bytes in predicted.items():
        assert agrees(n_bytes / MIB, got[device] / MIB, **TIGHT), (device, n_bytes / MIB, got[device] / MIB)


def run_bench(engine, model_path, args, log: Path) -> list[EngineReport]:
    result = procs.run([str(engine.tool("llama-bench")), "-m", str(model_path), *args,
                        "-p", "16", "-n", "4", "-r", "1", "-v"], timeout_s=180, log_path=log)
    assert result.ok, result.output_tail
    return parse_load_log(log.read_text())


def run_server(engine, model_path, args, log: Path) -> EngineReport:
    with LlamaServer(engine.tool("llama-server"), Path(model_path), [*args, "-c", "256"], log_path=log,
                     ready_timeout_s=120):
        pass
    report = parse_report(log.read_text())
    assert report is not None, log.read_text()[-3000:]
    return report


# name, llama-bench args, first GPU layer (n_layer + 1 - ngl for mainline), output on the accelerator, overrides
MAINLINE_CASES = [
    ("all-on-rpc", ["-ngl", "99"], 0, True, [], True),
    ("experts-1-2-on-cpu", ["-ngl", "99", "-ot", f"{EXPS_12}=CPU"], 0, True, [(EXPS_12, "cpu")], True),
    ("output-on-cpu", ["-ngl", "99", "-ot", r"output\.weight=CPU;output_norm=CPU"], 0, True,
     [(r"output\.weight", "cpu"), ("output_norm", "cpu")], True),
    ("ngl-3", ["-ngl", "3"], "n-2", True, [], True),
    ("no-mmap", ["-ngl", "99", "-lm", "none", "-ot", f"{EXPS_12}=CPU"], 0, True, [(EXPS_12, "cpu")], False),
    ("ncmoe-3", ["-ngl", "99", "-ncmoe", "3"], 0, True, [(r"blk\.[0-2]\.ffn_(up|down|gate)_exps", "cpu")], True),
    ("token-embd-on-rpc", ["-ngl", "99", "-ot", "token_embd=RPC0[{rpc}]"], 0, True, [("token_embd", "accel")], True),
]


@pytest.mark.parametrize("model_name", ["tiny", "tiny-glm"])
@pytest.mark.parametrize("case", MAINLINE_CASES, ids=[c[0] for c in MAINLINE_CASES])
def test_mainline_llama_bench_model_buffers_as_predicted(mainline_engine, mainline_rpc, models, model_name, case,
                                                         tmp_path):
    name, args, first_gpu, output_on_accel, overrides, mmap = case
    model = models[model_name]
    first_gpu = model.n_layers - 2 if first_gpu == "n-2" else first_gpu
    args = ["--rpc", mainline_rpc, *(a.replace("{rpc}", mainline_rpc) for a in args)]
    loads = run_bench(mainline_engine, model.path, args, tmp_path / "bench.log")
    assert len(loads) == 1 and len(loads[0].contexts) == 2  # one load, a context for pp16 and one for tg4
    report = loads[0]
    devices = placement(model, first_gpu_layer=first_gpu, output_on_accel=output_on_accel, overrides=overrides)
    assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=mmap), report)
    assert report.load_mode == ("mmap" if mmap else "none")
    assert report.layer_devices == {i: ("RPC0" if i >= first_gpu else "CPU") for i in range(model.n_layers + 1)}
    kv_devices = {f"RPC0[{mainline_rpc}]"} | ({"CPU"} if first_gpu > 0 else set())
    assert report.kv_bytes_by_device.keys() == kv_devices
    overridden = {n for n, d in devices.items() if any(re.search(p, n) for p, _ in overrides)}
    assert set(report.overrides) == overridden


def test_mapped_cpu_buffer_is_the_file_span_not_the_sum(mainline_engine, mainline_rpc, models, tmp_path):
    """With the output matrix on the CPU the mapped CPU buffer spans from token_embd (first in the file) to
    output.weight (last): the whole file, although the CPU tensors are only a tenth of it."""
    model = models["tiny"]
    loads = run_bench(mainline_engine, model.path, ["--rpc", mainline_rpc, "-ngl", "99", "-ot", r"output\.=CPU"],
                      tmp_path / "bench.log")
    cpu_names = ["token_embd.weight", "output.weight"]  # r"output\." does not match output_norm
    plain_sum = sum(t.n_bytes for t in model.tensors if t.name in cpu_names)
    actual = loads[-1].model_buffers["CPU_Mapped"]
    assert actual == pytest.approx(mapped_span(model.tensors), abs=0.005 * MIB)
    assert not agrees(plain_sum / MIB, actual / MIB)  # even the loose default tolerance rejects the plain sum


def test_llama_bench_override_groups_reload_the_model(mainline_engine, mainline_rpc, models, tmp_path):
    """`,` separates tests, `;` patterns of one test; the first matching pattern wins."""
    model = models["tiny-glm"]
    rpc = f"RPC0[{mainline_rpc}]"
    ot = rf"blk\.1\.={rpc};blk\.1\.ffn_up_exps=CPU,blk\.2\.ffn_up_exps={rpc}"
    loads = run_bench(mainline_engine, model.path, ["--rpc", mainline_rpc, "-ngl", "0", "-ot", ot],
                      tmp_path / "bench.log")
    assert len(loads) == 2
    assert loads[0].overrides["blk.1.ffn_up_exps.weight"] == rpc and len(loads[0].overrides) == 17
    assert loads[1].overrides == {"blk.2.ffn_up_exps.weight": rpc}
    for report, pattern in zip(loads, (r"blk\.1\.", r"blk\.2\.ffn_up_exps")):
        devices = placement(model, first_gpu_layer=None, output_on_accel=False, overrides=[(pattern, "accel")])
        assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=True), report)


def test_mainline_repack_buffer(mainline_engine, mainline_rpc, tmp_path, monkeypatch):
    """Q4_0 matrices kept on the CPU go to CPU_REPACK (allocated), the rest stays mapped."""
    preset = replace(presets.PRESETS["tiny"], name="tiny-q4_0", matrix_type="Q4_0", token_embd_type="Q4_0",
                     output_type="Q4_0")
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    model = inspect_model(write_synthetic_model(tmp_path / "tiny-q4_0.gguf", preset.name))
    loads = run_bench(mainline_engine, model.path, ["--rpc", mainline_rpc, "-ngl", "3"], tmp_path / "bench.log")
    report = loads[-1]
    devices = placement(model, first_gpu_layer=model.n_layers - 2, output_on_accel=True)
    repacked = mainline_repacked(model.tensors, [n for n, d in devices.items() if d == "cpu"])
    assert repacked and "token_embd.weight" not in repacked
    repack_bytes = sum(t.n_bytes for t in model.tensors if t.name in repacked)
    assert report.model_buffers["CPU_REPACK"] == pytest.approx(repack_bytes, abs=0.005 * MIB)
    assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=True, repacked=repacked), report)


@pytest.mark.parametrize("model_name", ["tiny", "tiny-glm"])
def test_mainline_server_report(mainline_engine, mainline_rpc, models, model_name, tmp_path):
    model = models[model_name]
    args = ["--rpc", mainline_rpc, "--fit", "off", "-lv", "4", "-ngl", "99", "-ot", f"{EXPS_12}=CPU"]
    report = run_server(mainline_engine, model.path, args, tmp_path / "server.log")
    devices = placement(model, first_gpu_layer=0, output_on_accel=True, overrides=[(EXPS_12, "cpu")])
    assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=True), report)
    assert (report.offloaded_layers, report.offloadable_layers) == (model.n_layers + 1,) * 2
    assert report.kv_bytes_by_device.keys() == {f"RPC0[{mainline_rpc}]"}
    assert report.compute_bytes_by_device.keys() == {"CPU", f"RPC0[{mainline_rpc}]"}
    assert len(report.contexts) == 1
    assert not any("fitting params" in line for line in report.fit_lines)  # --fit off


def test_mainline_server_fit_decides_and_says_so(mainline_engine, mainline_rpc, models, tmp_path):
    """--fit is on by default; a margin that leaves ~5 MiB of the RPC device makes it offload fewer layers."""
    model = models["tiny"]
    (rpc_device,) = mainline_engine.devices(rpc=[mainline_rpc])
    margin_mib = rpc_device.free_mib - 5
    log = tmp_path / "server.log"
    report = run_server(mainline_engine, model.path, ["--rpc", mainline_rpc, "-v", "-fitt", str(margin_mib)], log)
    dry_runs = [r for r in parse_load_log(log.read_text()) if not r.complete]  # fit's no-alloc measurements
    assert dry_runs and all(n == 0 for r in dry_runs for n in r.model_buffers.values())
    text = "\n".join(report.fit_lines)  # gathered from the dry runs and the real load
    assert "cannot meet free memory target" in text and "successfully fit params" in text
    assert report.offloaded_layers < report.offloadable_layers
    assert report.model_bytes_by_device["CPU"] > report.model_bytes_by_device[f"RPC0[{mainline_rpc}]"]


# ik_llama.cpp: its CPU build ignores -ngl for RPC devices (weights stay on the CPU), so only -ot places them
IK_CASES = [
    ("all-on-rpc", r"blk\.={rpc},output={rpc}", [(r"blk\.", "accel"), ("output", "accel")], [], True),
    ("layers-1-2-on-rpc", r"blk\.[1-2]\.={rpc}", [(r"blk\.[1-2]\.", "accel")], [], True),
    ("experts-on-cpu", rf"{EXPS_12}=CPU,blk\.={{rpc}},output={{rpc}}",
     [(EXPS_12, "cpu"), (r"blk\.", "accel"), ("output", "accel")], [], False),
    ("no-mmap", r"blk\.[1-2]\.={rpc}", [(r"blk\.[1-2]\.", "accel")], ["--no-mmap"], False),
]


@pytest.mark.parametrize("model_name", ["tiny", "tiny-glm"])
@pytest.mark.parametrize("case", IK_CASES, ids=[c[0] for c in IK_CASES])
def test_ik_server_model_buffers_as_predicted(ik_engine, ik_rpc, models, model_name, case, tmp_path):
    name, ot, overrides, extra, mmap = case
    model = models[model_name]
    rpc = f"RPC0[{ik_rpc}]"
    report = run_server(ik_engine, model.path, ["--rpc", ik_rpc, "-ngl", "99", *extra, "-ot", ot.replace("{rpc}", rpc)],
                        tmp_path / "server.log")
    devices = placement(model, first_gpu_layer=None, output_on_accel=False, overrides=overrides)
    cpu_overrides = any(dev == "cpu" for _, dev in overrides)
    assert mmap == engine_maps_weights("ik", mmap=not extra, tensors_overridden_to_cpu=cpu_overrides)
    assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=mmap), report)
    assert report.devices == [rpc, "CPU"]
    assert report.kv_bytes_by_device.keys() == {"CPU"}
    # ik also logs overrides of optional tensors the file lacks (GLM's attn_q_norm, size 0.00 MiB)
    moved = {n for n, d in report.overrides.items() if d == rpc and n in devices}
    assert moved == {n for n, d in devices.items() if d == "accel"}


def test_ik_server_ncmoe_is_last_n_with_two_devices_first_n_with_one(ik_engine, ik_rpc, models, tmp_path):
    model = models["tiny"]
    with_rpc = run_server(ik_engine, model.path, ["--rpc", ik_rpc, "-ngl", "99", "-ncmoe", "3"], tmp_path / "a.log")
    cpu_only = run_server(ik_engine, model.path, ["-ngl", "99", "-ncmoe", "3"], tmp_path / "b.log")
    layers = lambda r: {int(n.split(".")[1]) for n in r.overrides}  # noqa: E731
    assert with_rpc.devices == [f"RPC0[{ik_rpc}]", "CPU"] and layers(with_rpc) == {5, 6, 7}
    assert layers(cpu_only) == {0, 1, 2}
    assert all(re.search(r"ffn_(up|gate|down)_exps\.weight$", n) for n in with_rpc.overrides)


def test_ik_llama_bench_n_cpu_moe_first_n_and_allocated(ik_engine, models, tmp_path):
    model = models["tiny-glm"]  # layer 0 is dense: --n-cpu-moe counts it
    loads = run_bench(ik_engine, model.path, ["--n-cpu-moe", "3"], tmp_path / "bench.log")
    assert len(loads) == 1 and len(loads[0].contexts) == 2
    report = loads[0]
    assert {int(n.split(".")[1]) for n in report.overrides} == {1, 2} and len(report.overrides) == 6
    devices = {t.name: "cpu" for t in model.tensors}
    assert_matches(expected_model_buffer_bytes(model.tensors, devices, mmap=False), report)
    assert report.offloaded_layers == model.n_layers + 1  # "offloaded" although this build has no GPU


def test_ik_sweep_bench_report(ik_engine, ik_rpc, models, tmp_path):
    model = models["tiny-glm"]
    rpc = f"RPC0[{ik_rpc}]"
    log = tmp_path / "sweep.log"
    result = procs.run([str(ik_engine.tool("llama-sweep-bench")), "-m", str(model.path), "--rpc", ik_rpc, "-ngl", "99",
                        "-ot", rf"blk\.[1-2]\.={rpc}", "-c", "64", "-b", "32", "-ub", "32"], timeout_s=180, log_path=log)
    assert result.ok, result.output_tail
    report = parse_report(log.read_text())
    devices = placement(model, first_gpu_layer=None, output_on_accel=False, overrides=[(r"blk\.[1-2]\.", "accel")])
    predicted = expected_model_buffer_bytes(model.tensors, devices, mmap=True)
    assert_matches(predicted, report)
    assert predicted["cpu"] == pytest.approx(mapped_span(model.tensors))  # layers 0 and 3-5 + output: the whole file


def test_device_names_and_tolerance():
    assert [device_of_buffer(n) for n in ("CPU_Mapped", "CPU_REPACK", "CUDA_Host", "CUDA0", "RPC0[127.0.0.1:5]")] \
        == ["CPU", "CPU", "CPU", "CUDA0", "RPC0[127.0.0.1:5]"]
    assert agrees(100.0, 101.9) and agrees(10.0, 10.99) and not agrees(10.0, 11.2) and not agrees(200.0, 205.0)


def test_mapped_span_needs_offsets():
    from harness.models import inspect_preset

    with pytest.raises(ValueError):
        mapped_span(inspect_preset("tiny").tensors)
