"""`moebench calibrate`: measure the performance model's constants on this machine.

The engine runs a fixed set of placements of the synthetic calibration model (`tiny`) through the ordinary
runner (fresh processes in interleaved rounds; the rows are a normal results folder): everything on the
accelerator, everything but the output layer on the CPU, half the layers, all experts on the CPU, the experts of
the first 2/4/6 layers, and whole layers' weights on the CPU with their KV cache on the accelerator (many
crossings). The constants are fitted per tool from the per-configuration medians, and stored with the fit's
residuals and the device peaks (`harness.perf.calibration`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.config import BenchConfig, BenchSettings, EngineSpec, ModelSpec, StrategySpec, TelemetrySettings
from harness.config_devices import RpcRig
from harness.errors import UserError
from harness.perf.calibration import Calibration, ToolCalibration, calibration_dir, device_key, load_calibration
from harness.perf.configs import configuration_workload, test_of
from harness.perf.fit import fit_constants
from harness.perf.peaks import measure_peaks
from harness.perf.workload import Workload
from harness.plan.planner import Configuration, plan
from harness.plan.request import request_from_config
from harness.runner.sweep import run_sweep
from harness.telemetry.nvml import shared_nvml
from harness.results.reader import read_runs
from harness.results.record import modelled_test

CALIBRATION_MODEL = "tiny"
CALIBRATION_STRATEGIES = [
    {"name": "all-gpu"},
    {"name": "gpu-layers", "params": {"k": [0, 4]}},
    {"name": "cpu-moe"},
    {"name": "first-n-experts", "params": {"n": [2, 4, 6]}},
    {"name": "last-n-layers-cpu", "params": {"n": 2}},
]
QUICK_STRATEGIES = [{"name": "all-gpu"}, {"name": "gpu-layers", "params": {"k": 0}}, {"name": "cpu-moe"},
                    {"name": "first-n-experts", "params": {"n": 2}}, {"name": "last-n-layers-cpu", "params": {"n": 2}}]
# two sweeps, so the workloads differ in more than their placement: a short prompt and generation from an empty
# context, and a prompt of three micro-batches with generation over a filled cache (llama-bench: -d 512;
# llama-server generates after its prompt)
CALIBRATION_TESTS = {
    "short": {"prompt_tokens": [512], "gen_tokens": [128], "depth": [0]},
    "deep": {"prompt_tokens": [1536], "gen_tokens": [128], "depth": [512]},
}


def calibration_configs(engine: dict, *, rpc_rig: bool, device: str | None, tools: list[str],
                        processes: int, out: Path, quick: bool = False) -> list[BenchConfig]:
    """The calibration sweeps; `quick`: the first only, with five placements (a coarse fit: its cache-read term
    sees no filled cache)."""
    name = f"{engine['name']}-{'rpc-rig' if rpc_rig else device or 'default'}".replace("/", "_")
    variants = list(CALIBRATION_TESTS.items())[:1] if quick else CALIBRATION_TESTS.items()
    # a folder per tool set: calibrating one tool later resumes its own sweep, not another's (whose plan and
    # meta.json it would replace)
    tools_part = "" if set(tools) == {"llama-bench", "llama-server"} else "-" + "+".join(sorted(tools))
    strategies = [StrategySpec(**spec) for spec in (QUICK_STRATEGIES if quick else CALIBRATION_STRATEGIES)]
    return [BenchConfig(
        name=f"{name}-{variant}" + ("-quick" if quick else "") + tools_part, output=out,
        models=[ModelSpec(synth=CALIBRATION_MODEL)], engines=[EngineSpec(**engine)], tools=tools,
        rpc_rig=RpcRig() if rpc_rig else None, devices=[device] if device else [],
        telemetry=TelemetrySettings(enabled=False), strategies=strategies,
        bench=BenchSettings(**tests, repetitions=1, processes=processes, ctx=2304),
    ) for variant, tests in variants]


def samples(folder: Path, config: BenchConfig) -> dict[str, list[tuple[str, Workload, float]]]:
    """Per tool, (label, workload, median tokens/s over the processes) of every measured configuration and test
    in a results folder planned from `config`. The median: a slow stretch of a shared machine hits some
    processes of a configuration, not the typical one (docs/MEASUREMENT.md)."""
    rows = read_runs(folder)
    rows = rows[rows["status"] == "ok"]
    confs: dict[str, Configuration] = {conf.id: conf for conf in plan(request_from_config(config))}
    out: dict[str, list] = {}
    for (cid, test_name), group in rows.groupby(["config_id", "test"]):
        conf = confs.get(cid)
        if conf is None:
            continue
        first = group.iloc[0]
        modelled = modelled_test(first["n_prompt"], first["n_gen"])
        if modelled is None:
            continue  # combined tests are not modelled
        w = configuration_workload(conf, test_of(*modelled, int(first.get("n_depth") or 0), conf, config.bench))
        if w is not None:
            label = f"{conf.placement.describe()} {test_name}"
            out.setdefault(conf.tool, []).append((label, w, float(np.median(group["tps_mean"]))))
    return out


def stored_samples(configs: list[BenchConfig]) -> dict[str, list[tuple[str, Workload, float]]]:
    """Per tool, the samples of every calibration sweep of `configs` that has rows (`samples`)."""
    out: dict[str, list] = {}
    for config in configs:
        folder = Path(config.output) / config.name
        if (folder / "runs.csv").is_file():
            for tool, found in samples(folder, config).items():
                out.setdefault(tool, []).extend(found)
    return out


def calibrate(engine: dict, *, rpc_rig: bool, device: str | None, tools: list[str], processes: int = 3,
              progress=None, quick: bool = False) -> Calibration:
    """Run the calibration sweep (resumed when it was started before), fit, measure the peaks, store."""
    out = calibration_dir() / "runs"
    configs = calibration_configs(engine, rpc_rig=rpc_rig, device=device, tools=tools, processes=processes,
                                  out=out, quick=quick)
    folders = [run_sweep(config, out, progress, resume=True) for config in configs]
    planned = plan(request_from_config(configs[0]))
    target = next((conf.target for conf in planned if conf.target is not None), None)
    dev = "rpc-rig" if rpc_rig else device_key(target.buffer_type if target else device or "default")
    peaks = measure_peaks(rpc_rig, shared_nvml())
    bus = 1.0 / peaks.bus_bytes_s
    threads = {conf.tool: conf.threads for conf in planned}
    fitted = {}
    for tool, found in stored_samples(configs).items():
        fit = fit_constants(found, bus)
        fitted[tool] = ToolCalibration(threads[tool], fit.constants, fit.residuals, fit.median_abs_error_pct,
                                       [str(folder) for folder in folders])
    if not fitted:
        raise UserError(f"no configuration of the calibration sweeps was measured; see {folders[0]}/runs.csv")
    engine_name = planned[0].engine.name
    calibration = Calibration(engine_name, dev, peaks, fitted).keeping(load_calibration(engine_name, dev))
    calibration.save()
    return calibration
