"""Several devices: the split rule against mainline's `-ts` arithmetic, experts-balanced, the device settings of
bench.yaml (errors with line and key), per-device budgets and `skipped: predicted-oom`, the CPU sets of a
two-server rig, the examples, and a real sweep on two RPC servers per engine whose every row's predicted
model buffers per device equal the engine's report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import REPO, run_cli
from harness.config import load_config
from harness.cpus import cpu_budget
from harness.errors import UserError
from harness.models import inspect_model, synthetic_model
from harness.plan.memory import MIB, predict_memory
from harness.plan.split import balanced_layers, split_layers, ts_counts
from harness.results.reader import by_device, read_devices
from strategies import get_strategy


def mainline_ts(n_items: int, split: list[float]) -> list[int]:
    """mainline's load_tensors, in float32 as the engine computes it: the device of each offloaded layer."""
    points = np.cumsum(np.array(split, dtype=np.float32), dtype=np.float32)
    points = points / points[-1]
    return [int(np.searchsorted(points, np.float32(j) / np.float32(n_items), side="right")) for j in range(n_items)]


@pytest.mark.parametrize("n, split", [(9, [3, 1]), (9, [1, 1]), (49, [11000, 7500]), (5, [0, 1]), (7, [2, 0, 3]),
                                      (33, [1, 1, 1]), (1, [1, 1])])
def test_split_rule_is_mainlines_and_counts_reproduce_it(n, split):
    devices = split_layers(n, split)
    assert [int(d[5:]) for d in devices] == mainline_ts(n, split)
    counts = ts_counts(tuple(devices[:-1]), devices[-1], len(split))
    assert counts is not None and [int(d[5:]) for d in split_layers(n, counts)] == mainline_ts(n, counts)
    assert split_layers(n, counts) == devices


def test_ts_counts_refuses_what_ts_cannot_place():
    assert ts_counts(("accel1", "accel0"), "accel1", 2) is None            # devices out of order
    assert ts_counts(("accel0", "cpu"), "accel0", 2) is None                # a CPU layer after offloaded ones
    assert ts_counts(("cpu", "accel0", "accel1"), "accel1", 2) == [1, 2]


def test_experts_balanced_spreads_bytes_where_ncmoe_and_ts_do_not():
    from harness.models import inspect_preset

    big = inspect_preset("qwen3-30b-a3b")  # 48 layers: -ncmoe 16 -ts 1,1 leaves the first card a third empty
    balanced = get_strategy("experts-balanced").placement(big, {"n": 16, "split": [1, 1]})
    naive = get_strategy("first-n-experts").placement(big, {"n": 16, "split": [1, 1]})
    assert set(balanced.tensors_on("cpu")) == set(naive.tensors_on("cpu"))  # the same experts in RAM
    share = lambda p: p.weight_bytes_by_device(big)["accel0"] / sum(  # noqa: E731
        b for d, b in p.weight_bytes_by_device(big).items() if d != "cpu")
    assert share(naive) < 0.35 and 0.47 < share(balanced) < 0.53
    model = inspect_model(synthetic_model("tiny"))
    layer_bytes = [1, 1, 5, 5, 5, 5]
    assert balanced_layers(layer_bytes, [1, 1]) == ["accel0"] * 4 + ["accel1"] * 2
    head_tail = get_strategy("experts-balanced").placement(model, {"n": 3, "cpu": "head-tail", "split": [1, 1]})
    assert {n.split(".")[1] for n in head_tail.tensors_on("cpu") if n.startswith("blk")} == {"0", "1", "7"}


def _config(tmp_path, text: str):
    path = tmp_path / "bench.yaml"
    path.write_text("models: [{synth: tiny}]\nengines: [mainline]\n" + text)
    return load_config(path)


def test_device_settings_errors_name_line_and_key(tmp_path):
    with pytest.raises(UserError) as err:
        _config(tmp_path, "devices: [CUDA0, CUDA1]\nvram_budget_mib: [1000, 2000, 3000]\n")
    assert "bench.yaml:4: vram_budget_mib: 3 budgets for 2 devices" in str(err.value)
    with pytest.raises(UserError) as err:
        _config(tmp_path, "rpc: [somehost]\n")
    assert "bench.yaml:3: rpc.0: 'somehost' is not host:port" in str(err.value)
    with pytest.raises(UserError) as err:
        _config(tmp_path, "rpc_rig: {servers: 2, srvers: 1}\n")
    assert "did you mean 'servers'" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError) as err:
        _config(tmp_path, "rpc_rig: true\ndevices: [CUDA0]\n")
    assert "either rpc_rig or devices/rpc" in str(err.value)
    config = _config(tmp_path, "rpc_rig: {servers: 2}\nvram_budget_mib: [10, 30]\n")
    assert config.rpc_rig.servers == 2


def test_budgets_per_device_decide_predicted_oom():
    model = inspect_model(synthetic_model("tiny"))
    placement = get_strategy("all-gpu").placement(model, {"split": [3, 1]})
    memory = predict_memory(placement, model, budget_bytes={"accel0": 20 * MIB, "accel1": 40 * MIB})
    assert memory.fits is False and list(memory.over_budget()) == ["accel0"]
    assert "on CUDA0, budget 20 MiB" in memory.oom_reason({"accel0": "CUDA0"})
    roomy = predict_memory(placement, model, budget_bytes={"accel0": 40 * MIB, "accel1": 20 * MIB})
    assert roomy.fits is True and roomy.to_dict()["fits_by_device"] == {"accel0": True, "accel1": True}


def test_two_server_rig_cpu_sets():
    eight = cpu_budget(2, tuple(range(8)))
    assert eight.rpc_cpu_sets == ((4, 5), (6, 7)) and eight.oversubscribed(4) is None
    two = cpu_budget(2, (0, 1))  # this machine: the servers share the second CPU, and the rows say so
    assert two.engine_cpus == (0,) and two.rpc_cpu_sets == ((1,), (1,)) and two.describe_rpc() == "1/1"
    assert "2 RPC servers share CPUs" in two.oversubscribed(1)


def test_examples_plan_per_device(mainline_engine, ik_engine, tmp_path):
    """examples/two-gpus.yaml and rpc-cluster.yaml: per-device memory, -ts per layer counts, the default split
    from the budgets, and a point that overflows one card skipped."""
    from test_plan_equals_run import planned, runnable_here

    engines = {"mainline": mainline_engine, "ik": ik_engine}
    rows = list(planned(runnable_here(REPO / "examples" / "two-gpus.yaml", tmp_path, engines)).values())
    balanced = [r for r in rows if r["strategy"] == "experts-balanced"]
    assert balanced and all(r["params"]["split"] == [22500, 22500] for r in balanced)
    for r in rows:
        assert set(r["memory"]["vram_mib_by_device"]) <= {"accel0", "accel1"}
        assert r["devices"] == {"accel0": "CUDA0", "accel1": "CUDA1"}
        if r["status"] != "invalid":
            args = r["args"]
            assert "-ts" in args and args[args.index("-dev") + 1] == "CUDA0,CUDA1"
    assert any(r["status"] == "skipped: predicted-oom" for r in rows) and any(r["status"] == "planned" for r in rows)
    cluster = list(planned(runnable_here(REPO / "examples" / "rpc-cluster.yaml", tmp_path, engines)).values())
    layers = [r for r in cluster if r["strategy"] == "gpu-layers"]
    assert layers and all(r["params"]["split"] == [11000, 7500] for r in layers)
    argv = layers[0]["args"]
    assert argv[:4] == ["--rpc", "192.168.1.20:50052,192.168.1.21:50052", "-dev", "RPC0,RPC1"]
    assert {r["params"]["split"] == [3, 2] for r in cluster if r["strategy"] == "first-n-experts"} == {True, False}
    text = run_cli("plan", REPO / "examples" / "rpc-cluster.yaml")
    assert text.returncode == 0 and "RPC0[192.168.1.21:50052]: " in text.stdout and " of 7500" in text.stdout


def test_sweep_on_two_rpc_servers(mainline_engine, ik_engine, tmp_path):
    """`moebench run` with two RPC servers per engine: a layer split and experts-balanced on both engines run,
    and every row's predicted model buffers per device equal the engine's report; a point that overflows one
    device's budget is skipped, naming that device."""
    config = tmp_path / "bench.yaml"
    config.write_text("""
models: [{synth: tiny}]
engines: [mainline, ik]
tools: [llama-server]
rpc_rig: {servers: 2}
vram_budget_mib: [12, 30]     # all-gpu split 3:1: 12.7 MiB of weights on the first server alone
bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1, ctx: 64}
strategies:
  - name: gpu-layers
    params: {k: 4, split: [3, 1]}
  - name: experts-balanced
    params: {n: 2}
  - name: all-gpu
    params: {split: [3, 1]}
""")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "default" / "runs.csv").open()))
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["engine"].split("-")[0], r["strategy"]) for r in ok} == {
        (e, s) for e in ("mainline", "ik") for s in ("gpu-layers", "experts-balanced")}
    devices = read_devices(tmp_path / "out" / "default")
    predicted_of, actual_of = by_device(devices, "predicted_model_bytes"), by_device(devices, "actual_model_bytes")
    vram_of = by_device(devices, "predicted_vram_bytes")
    for r in ok:
        predicted, actual = predicted_of[r["run_id"]], actual_of[r["run_id"]]
        assert len(predicted) == 3 and set(predicted) == set(actual), (predicted, actual)
        assert all(abs(predicted[d] - actual[d]) <= 0.005 * MIB for d in predicted), (r["strategy"], predicted, actual)
        assert len(vram_of[r["run_id"]]) == 2 and r["device"].count("RPC0[") == 2
        assert r["rpc_cpus"] == cpu_budget(2).describe_rpc()
    # plan == run: each executed argument list is the planned one, the servers' ports as placeholders
    plan = {r["config_id"]: r["commands"] for r in json.loads(run_cli("plan", config, "--json").stdout)}
    devices = json.loads((tmp_path / "out" / "default" / "meta.json").read_text())["devices"]
    for r in ok:
        argv = " ".join(json.loads(r["command"]))
        for i, device in enumerate(next(v for k, v in devices.items() if k == r["engine"])):
            argv = argv.replace(device[5:-1], "127.0.0.1:RPC_PORT" + (f"_{i}" if i else ""))
        port = json.loads(r["command"])[json.loads(r["command"]).index("--port") + 1]
        assert argv.replace(f"--port {port}", "--port SERVER_PORT") in [" ".join(c) for c in plan[r["config_id"]]]
    skipped = [r for r in rows if r["strategy"] == "all-gpu"]
    assert {r["status"] for r in skipped} == {"skipped: predicted-oom"}
    assert all("budget 12 MiB" in r["reason"] and "budget 30" not in r["reason"] for r in skipped)
