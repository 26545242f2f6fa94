"""Checked against reality on two devices: two RPC servers of each engine on loopback (a module-scoped rig per
engine), every built-in strategy that takes a split, both model families. The model buffer bytes moebench
predicts on each device (CPU, the first server, the second) equal what the engine reports, within its print
rounding; mainline through llama-bench (and its server for the `-ts`/`-dev` comma syntax), ik through its
server (its llama-bench cannot place weights on an RPC device). Also the two engines' multi-device
`-ncmoe` facts of docs/ENGINE_FLAGS.md section 9."""

from __future__ import annotations

import re

import pytest

from harness import procs
from harness.engines.rpc import RpcServer
from harness.models import inspect_model, synthetic_model
from harness.plan.flags import compile_flags
from harness.plan.load_report import parse_report
from harness.units import MIB
from harness.plan.targets import resolve_target
from harness.plan.verify import predicted_model_buffers
from harness.tools.server_process import LlamaServer
from strategies import available_strategies, get_strategy

from buffer_checks import check_against_report

PARAMS = {  # every strategy that takes a split, with one that puts something on each device
    "all-gpu": {"split": [3, 1]}, "cpu-moe": {"split": [1, 1]}, "first-n-experts": {"n": 2, "split": [1, 1]},
    "last-n-experts": {"n": 3, "split": [2, 1]}, "head-tail-experts": {"head": 1, "tail": 2, "split": [1, 2]},
    "gpu-layers": {"k": 4, "split": [3, 1]}, "last-n-layers-cpu": {"n": 2, "split": [1, 1]},
    "partial-experts": {"n": 3, "parts": "gate,up", "split": [1, 1]},
    "experts-balanced": {"n": 3, "cpu": "head-tail", "split": [1, 1]},
}
ROUNDING_MIB = 0.005 + 1e-9   # sizes are printed in MiB with 2 decimals
PRESETS = ("tiny", "tiny-glm", "tiny-glm-mtp")


def test_every_strategy_with_a_split_is_checked():
    takes = {name for name in available_strategies() if get_strategy(name).takes_split}
    assert takes == set(PARAMS)


@pytest.fixture(scope="module")
def rig(engine, tmp_path_factory):
    """An engine and two of its own RPC servers on loopback: two devices."""
    logs = tmp_path_factory.mktemp(f"rig2-{engine.dialect}")
    with RpcServer(engine, threads=1, log_path=logs / "rpc0.log") as a, \
            RpcServer(engine, threads=1, log_path=logs / "rpc1.log") as b:
        yield engine, [f"RPC0[{a.endpoint}]", f"RPC0[{b.endpoint}]"], logs


def _load_log(engine, tool, model_path, args, log_path) -> str:
    if tool == "llama-bench":
        argv = [str(engine.tool(tool)), "-m", str(model_path), "-p", "8", "-n", "2", "-r", "1", "-t", "1", "-v", *args]
        result = procs.run(argv, timeout_s=180, log_path=log_path, stdout_path=log_path.with_suffix(".out"))
        assert result.ok, result.output_tail
    else:
        extra = ["-lv", "4"] if engine.dialect == "mainline" else []
        with LlamaServer(engine.tool(tool), model_path, [*args, "-c", "256", "-t", "1", *extra], log_path=log_path):
            pass
    return log_path.read_text(errors="replace")


def _check(engine, tool, devices, preset, name, params, logs) -> tuple[list[str], float, int]:
    model_path = synthetic_model(preset)
    model = inspect_model(model_path)
    target = resolve_target(engine, tool, devices)
    placement = get_strategy(name).placement(model, params)
    compiled = compile_flags(placement, model, target)
    report = parse_report(_load_log(engine, tool, model_path, compiled.args, logs / f"{preset}-{name}-{tool}.log"))
    assert report is not None, f"{name}: no load report in {logs}"
    predicted = predicted_model_buffers(placement, model, target, compiled)
    assert set(predicted) == {"CPU", *devices}, (name, predicted)  # every strategy here uses both devices
    failures, worst = [], 0.0
    for check in check_against_report(predicted, report):
        off = abs(check.predicted_bytes - (check.actual_bytes or 0)) / MIB
        worst = max(worst, off)
        if off > ROUNDING_MIB:
            failures.append(f"{preset} {name} {tool} {check.device}: predicted {check.predicted_bytes / MIB:.3f} "
                            f"MiB, reported {(check.actual_bytes or 0) / MIB:.3f}  ({' '.join(compiled.args)})")
    return failures, worst, len(predicted)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_split_strategy_places_on_each_device_what_it_predicts(rig, preset):
    engine, devices, logs = rig
    tool = "llama-bench" if engine.dialect == "mainline" else "llama-server"
    runs = [(tool, name, params) for name, params in PARAMS.items()]
    if engine.dialect == "mainline":  # the server spells lists with commas
        runs += [("llama-server", "gpu-layers", PARAMS["gpu-layers"]),
                 ("llama-server", "experts-balanced", {"n": 2, "split": [1, 1]})]
    failures, checked, worst = [], 0, 0.0
    for tool_, name, params in runs:
        more, off, n = _check(engine, tool_, devices, preset, name, params, logs)
        failures += more
        checked += n
        worst = max(worst, off)
    assert not failures, "\n".join(failures)
    assert checked == 3 * len(runs)
    print(f"{engine.dialect} {preset}: {len(runs)} placements, {checked} device checks, max deviation "
          f"{worst:.4f} MiB")


def test_ncmoe_on_two_devices(rig, tmp_path):
    """mainline: `-ncmoe 3` takes the experts of layers 0-2 whatever `-ts` does (first-N); ik's server shares the
    count out over the devices by their layer counts and takes each device's share from its last layers."""
    engine, devices, logs = rig
    model_path = synthetic_model("tiny")
    endpoints = [d[5:-1] for d in devices]
    if engine.dialect == "mainline":
        args = ["--rpc", ",".join(endpoints), "-dev", "RPC0/RPC1", "-ngl", "99", "-ts", "1/1", "-ncmoe", "3"]
        text = _load_log(engine, "llama-bench", model_path, args, tmp_path / "ncmoe.log")
    else:
        args = ["--rpc", ",".join(endpoints), "-dev", ",".join(devices), "-ngl", "99", "-ts", "1,1", "-ncmoe", "3"]
        text = _load_log(engine, "llama-server", model_path, args, tmp_path / "ncmoe.log")
    report = parse_report(text)
    on_cpu = {int(re.match(r"blk\.(\d+)\.", t).group(1)) for t, buffer in report.overrides.items()
              if buffer == "CPU" and "_exps" in t}
    if engine.dialect == "mainline":
        assert on_cpu == {0, 1, 2}, report.overrides
        return
    layer_device = {int(a): int(b) for a, b in re.findall(r"Setting default device in layer\s+(\d+) to (\d+)", text)}
    per_device: dict[int, list[int]] = {}
    for layer in range(8):  # tiny's repeating layers, in order
        per_device.setdefault(layer_device[layer], []).append(layer)
    taken = {d: sorted(set(layers) & on_cpu) for d, layers in per_device.items()}
    assert len(on_cpu) == 3 and sum(1 for t in taken.values() if t) == 2, (layer_device, on_cpu)
    for d, layers in per_device.items():  # each device's share: its last layers
        assert taken[d] == layers[len(layers) - len(taken[d]):], (d, layers, on_cpu)
