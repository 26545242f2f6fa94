"""How long a sweep will take (issue 20): `moebench plan` prints it before anything runs. It lives in perf (the
performance model applied to a whole sweep, above the planner whose configurations it times).

The sweep's wall time is its set-up (the RPC rig's servers, planning) plus, for every configuration, `processes`
times what one process of it costs:

- each engine launch (llama-bench: one per test, `bench_phases`; llama-server: one) starts the binary and loads
  the model: the tool's own start-up (backend init, for llama-server the health polling: as the calibration
  sweep's own rows timed it, `measured_launch_s`, else `launch_s`, a guess) + the
  model's bytes at `read_bytes_s` (the GGUF read, from the page cache after the first time) + the bytes placed
  on accelerators at `bus_bytes_s` (PCIe, or the RPC rig's loopback TCP);
- each test's warm-up and repetitions at the predicted speed: the performance model's (`harness.perf`, where
  `moebench calibrate` measured this engine and device), else a rough one (`rough_tps`: the same model with
  rough constants, `ROUGH_GPU` or `ROUGH_RIG`), said so in the estimate;
- the harness's own work per process (`harness_s`: telemetry, rows, the engine's log).

A configuration that will not run (predicted not to fit, or invalid) costs nothing but its row. Adaptive rounds
(`bench.until`) may add processes: the estimate is for the fixed `processes`, and says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.perf.configs import Predictor, configuration_workload, test_of
from harness.perf.model import Constants, predict
from harness.plan.placement import is_accelerator
from harness.plan.planner import Configuration, plan, status
from harness.plan.request import request_from_config
from harness.results.reader import read_runs
from harness.tools.llama_bench import bench_phases

# Rough constants of the performance model for a configuration without a calibration (seconds per unit):
# a GPU box (DDR5 RAM, a PCIe 4 card), and the RPC rig (read off a sweep of the tiny model on the 2-core
# development machine: its "accelerator" is a CPU behind loopback TCP). Guesses: `moebench calibrate` measures.
ROUGH_GPU = Constants(
    tg={"crossing_s": 1e-4, "detour_s": 1e-3, "cpu_s_per_byte": 1 / 20e9, "accel_s_per_byte": 1 / 500e9,
        "kv_s_per_byte": 1 / 500e9},
    pp={"pass_s": 5e-3, "crossing_s": 2e-3, "cpu_s_per_flop": 1 / 2e11, "accel_s_per_flop": 1 / 5e13},
    bus_s_per_byte=1 / 12e9)
ROUGH_RIG = Constants(
    tg={"crossing_s": 8e-4, "detour_s": 3e-3, "cpu_s_per_byte": 1 / 4e9, "accel_s_per_byte": 1 / 4e9,
        "kv_s_per_byte": 1 / 4e9},
    pp={"pass_s": 0.0, "crossing_s": 1.5e-2, "cpu_s_per_flop": 1 / 2e10, "accel_s_per_flop": 1 / 2e10},
    bus_s_per_byte=1 / 1.5e9)
PP_OVER_TG = 10.0           # prompt over generation tokens/s where nothing is placed (engine-fit), uncalibrated
SERVER_WARMUP = (16, 4)     # llama-server's warm-up request: prompt, generated tokens (`measure_server`)


@dataclass(frozen=True)
class EtaConstants:
    """Seconds and bytes per second of what is not the measurement itself (defaults: measured on the RPC rig
    of a 2-core development machine with the tiny model, docs/MEASUREMENT.md)."""

    launch_s: dict[str, float] = field(default_factory=lambda: {"llama-bench": 0.15, "llama-server": 0.35,
                                                                "llama-sweep-bench": 0.3})
    read_bytes_s: float = 2e9         # the GGUF from the page cache (a cold NVMe read: about 2-3 GB/s)
    bus_bytes_s: float = 8e9          # weights to an accelerator (PCIe 4 x16 effective)
    rig_bus_bytes_s: float = 0.5e9    # weights to the RPC rig's server over loopback TCP
    request_s: float = 0.01           # one llama-server HTTP request besides its tokens
    harness_s: float = 0.02           # per process beyond its measured duration: rows, telemetry file (the
                                      # default sweep alone: 142 s of wall, 138 s of process durations, 168)
    setup_s: float = 2.0              # the sweep: interpreter start, planning, engines probed, the rig's servers
                                      # started (wall less the processes' durations, 2026-12-08: 1.2 s for
                                      # eta_accuracy's 12 processes, 2.4 s for the default sweep's 168)


@dataclass
class SweepEstimate:
    seconds: float
    processes: int                    # processes that will run (configurations that run × processes)
    configurations: int               # configurations that run
    not_run: int                      # configurations that will not run (predicted-oom, invalid)
    rough: int                        # configurations whose speeds are the rough, uncalibrated ones
    adaptive: bool                    # bench.until may add processes
    per_configuration: dict[str, float] = field(default_factory=dict)  # config id → seconds of one process

    def describe(self) -> str:
        """One line for people."""
        text = (f"estimated wall time: {_clock(self.seconds)} ({self.processes} processes of "
                f"{self.configurations} configurations")
        if self.not_run:
            text += f"; {self.not_run} will not run"
        text += ")"
        if self.rough:
            text += (f"; the speeds of {self.rough} configurations are rough guesses (no calibration for their "
                     "engine, tool and device: `moebench calibrate` makes them the model's)")
        if self.adaptive:
            text += "; bench.until may add processes"
        return text


def estimate_sweep(config, planned: list[tuple[str, Configuration]] | None = None,
                   constants: EtaConstants | None = None) -> SweepEstimate:
    """The estimate for `config`'s sweep (its configurations as `moebench plan` plans them, unless given)."""
    constants = constants or EtaConstants()
    planned = planned if planned is not None else [(c.id, c) for c in plan(request_from_config(config))]
    predictor = Predictor.for_configurations([conf for _, conf in planned])
    bench = config.bench
    total, per, runs, not_run, rough = constants.setup_s, {}, 0, 0, 0
    for cid, conf in planned:
        if status(conf) != "planned":
            not_run += 1
            total += constants.harness_s * bench.processes
            continue
        seconds, guessed = process_seconds(conf, bench, predictor, constants, rig=bool(config.rpc_rig))
        per[cid] = seconds
        runs += 1
        rough += guessed
        total += seconds * bench.processes
    return SweepEstimate(total, runs * bench.processes, runs, not_run, rough, bench.until is not None, per)


def process_seconds(conf: Configuration, bench, predictor: Predictor, constants: EtaConstants,
                    rig: bool = False) -> tuple[float, bool]:
    """(seconds one process of `conf` takes, whether its speeds are rough guesses)."""
    cal = predictor.calibration(conf)
    guessed = cal is None or cal.constants_for(conf.tool, conf.threads) is None  # no constants for this tool

    def seconds(kind: str, tokens: int, depth: int = 0) -> float:
        if tokens <= 0:
            return 0.0
        return tokens / _tps(conf, bench, predictor, kind, tokens, depth, rig)

    def per_token(kind: str, tokens: int) -> float:
        # a warm-up's tokens at the speed of the test it precedes: the model's speed at a handful of prompt
        # tokens is its fixed pass cost over them, which a calibration of one prompt size cannot tell apart
        return seconds(kind, tokens) / tokens if tokens > 0 else 0.0

    launch = measured_launch_s(cal, conf.tool, constants, rig)
    load = (constants.launch_s.get(conf.tool, 0.3) if launch is None else launch)
    load += _model_bytes(conf) / constants.read_bytes_s
    load += _accelerator_bytes(conf) / (constants.rig_bus_bytes_s if rig else constants.bus_bytes_s)
    reps = bench.repetitions
    if conf.tool == "llama-server":
        first_pp, first_tg = bench.prompt_tokens[0], bench.gen_tokens[0]
        pairs = [(p, first_tg) for p in bench.prompt_tokens]
        pairs += [(first_pp, g) for g in bench.gen_tokens if (first_pp, g) not in pairs]
        work = (SERVER_WARMUP[0] * per_token("pp", max(first_pp, 1)) + SERVER_WARMUP[1] * per_token("tg", 1)
                + constants.request_s)
        for p, g in pairs:
            work += reps * (seconds("pp", max(p, 1)) + seconds("tg", max(g, 1)) + constants.request_s)
        for level in (c for c in bench.concurrency if c > 1):
            work += reps * (level * seconds("pp", max(first_pp, 1)) + seconds("tg", max(first_tg, 1))
                            + constants.request_s)
        launches = 1
    else:
        phases = bench_phases(bench)
        launches, work = len(phases), 0.0
        for phase in phases:
            p, g, d = phase.prompt_tokens[0], phase.gen_tokens[0], phase.depth[0]
            warm_prompt, warm_gen = bench_warmup_tokens(conf.engine.dialect, p)
            warm = warm_prompt * per_token("pp", p) + warm_gen * per_token("tg", 1)
            work += warm + reps * (seconds("pp", d) + seconds("pp", p, d) + seconds("tg", g, d))
    return launches * load + work + constants.harness_s, guessed


_LAUNCHES: dict[tuple, float | None] = {}


def measured_launch_s(cal, tool: str, constants: "EtaConstants | None" = None, rig: bool = False) -> float | None:
    """One launch's start-up of `tool` as its calibration sweeps timed it: the median over the calibration's
    processes of the process's seconds less its tests' tokens at their measured speed, per launch (llama-bench:
    one per test; llama-server: one), less the load of the calibration's model at the constants' rates (the
    estimate adds each configuration's own) and less the warm-ups at the process's own speeds (the estimate
    adds each configuration's own, `_warmups_s`), on this machine as it was then; None without the tool's
    calibration rows (then `EtaConstants.launch_s`)."""
    found = cal.tools.get(tool) if cal is not None else None
    if found is None or not found.results:
        return None
    constants = constants or EtaConstants()
    key = (tuple(found.results), tool, rig, constants.read_bytes_s, constants.bus_bytes_s, constants.rig_bus_bytes_s)
    if key not in _LAUNCHES:
        per_launch = [s for folder in found.results for s in _launches_in(Path(folder), tool, constants, rig)]
        _LAUNCHES[key] = max(statistics.median(per_launch), 0.0) if per_launch else None
    return _LAUNCHES[key]


def _launches_in(folder: Path, tool: str, constants: "EtaConstants | None" = None,
                 rig: bool = False) -> list[float]:
    """Each process's seconds per launch beyond its tests (and the model's load) in one results folder."""
    try:
        rows = read_runs(folder)
    except (OSError, UserError):
        return []
    rows = rows[(rows["status"] == "ok") & (rows["tool"] == tool)]
    per_launch = []
    for _, process in rows.groupby(["config_id", "process_index"]):
        tokens = process["n_prompt"].fillna(0) + process["n_gen"].fillna(0)
        work = float((process["repetitions"].fillna(1) * tokens / process["tps_mean"]).sum())
        work += _warmups_s(process, tool)
        launches = len(process) if tool != "llama-server" else 1
        load = 0.0
        if constants is not None:  # the calibration model's read and its bytes to the accelerator
            first = process.iloc[0]
            load = float(first.get("model_size_bytes") or 0) / constants.read_bytes_s
            load += float(first.get("predicted_vram_bytes") or 0) / (constants.rig_bus_bytes_s if rig
                                                                       else constants.bus_bytes_s)
        per_launch.append((float(process["duration_s"].iloc[0]) - work) / launches - load)
    return per_launch


def bench_warmup_tokens(dialect: str, n_prompt: int) -> tuple[int, int]:
    """(prompt tokens, generated tokens) llama-bench runs before a test's repetitions: mainline b11434 the whole
    prompt of a prompt test (`test_prompt(ctx, t.n_prompt, ...)`; the 32-token warm-up is commented out), ik 0.1.5
    one prompt token (`test_prompt(ctx, 1, ...)`, a pass like one generated token's); either, one generated token
    before a generation test (`tools/llama-bench/llama-bench.cpp`, `examples/llama-bench/llama-bench.cpp`)."""
    if n_prompt and dialect != "ik":
        return n_prompt, 0
    return 0, 1


def _warmups_s(process, tool: str) -> float:
    """The warm-ups of one process at its own measured speeds, which `process_seconds` adds apart (left in the
    launch they were counted twice: 0.1-0.45 s a process on the tiny model). llama-bench warms each test up
    (`bench_warmup_tokens`); llama-server once (`SERVER_WARMUP`, at the speeds of its first prompt and
    generation rows). A warm-up's generated token is priced at the process's first generation row's speed."""
    prompt = process["n_prompt"].fillna(0) > 0
    tps = process["tps_mean"]
    tg = tps[~prompt]
    if tool == "llama-server":
        pp = tps[prompt & (process["n_gen"].fillna(0) == 0)]
        if pp.empty or tg.empty:
            return 0.0
        return SERVER_WARMUP[0] / float(pp.iloc[0]) + SERVER_WARMUP[1] / float(tg.iloc[0])
    dialect = str(process["engine_dialect"].iloc[0]) if "engine_dialect" in process else "mainline"
    gen_rate = float(tg.iloc[0]) if not tg.empty else math.inf
    total = 0.0
    for n_prompt, rate in zip(process["n_prompt"].fillna(0).astype(int), tps):
        warm_prompt, warm_gen = bench_warmup_tokens(dialect, n_prompt)
        total += warm_prompt / rate + warm_gen / (gen_rate if n_prompt else rate)
    return total


def _tps(conf: Configuration, bench, predictor: Predictor, kind: str, tokens: int, depth: int,
         rig: bool = False) -> float:
    """The model's tokens/s for the test where calibrated, else `rough_tps`."""
    test = test_of(kind, tokens, depth, conf, bench)
    found = predictor.prediction(conf, test)
    if found is not None and found[1] is not None and found[1].tps > 0:
        return found[1].tps
    return rough_tps(conf, test, rig)


def rough_tps(conf: Configuration, test, rig: bool = False) -> float:
    """Without a calibration: the performance model with rough constants (`ROUGH_RIG` on the RPC rig, else
    `ROUGH_GPU`); where the engine places the weights itself (engine-fit), all of them read at CPU speed."""
    constants = ROUGH_RIG if rig else ROUGH_GPU
    w = configuration_workload(conf, test)
    if w is not None:
        tps = predict(w, constants).tps
        if tps > 0:
            return tps
    tg = 1 / (conf.model.info.active_bytes_per_token * constants.tg["cpu_s_per_byte"] + constants.tg["crossing_s"])
    return tg * PP_OVER_TG if test.kind == "pp" else tg


def _model_bytes(conf: Configuration) -> int:
    info = conf.model.info
    return int(info.file_size_bytes or info.tensor_bytes_total)


def _accelerator_bytes(conf: Configuration) -> int:
    if conf.memory is None:
        return 0
    return sum(b for d, b in conf.memory.weights_bytes.items() if is_accelerator(d))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")
