"""Run a bench.yaml: every configuration (model x strategy point x engine x tool) in one fresh, supervised
engine process, one row per measured test appended to the results store. A configuration predicted not to fit
becomes a `skipped: predicted-oom` row, one that cannot be compiled or whose engine fails becomes a `failed`
row with the reason and the tail of its log; the sweep goes on."""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Callable, Protocol

from harness import __version__, procs
from harness.config import BenchConfig
from harness.engines.discover import Engine, find_engine
from harness.engines.rpc import RpcServer
from harness.errors import UserError
from harness.gpu.vram_limit import VramReservation
from harness.hostinfo import host_fingerprint
from harness.plan.load_report import parse_report
from harness.runner.configurations import Configuration, configurations, resolve_model
from harness.runner.llama_bench import BenchOutputError, BenchTest, bench_argv, parse_bench_json
from harness.runner.llama_server import ServerError
from harness.runner.server_bench import measure_server
from harness.runner.sweep_bench import parse_sweep_table, sweep_bench_argv
from harness.store import ResultsStore
from harness.telemetry import Sampler, open_nvml


class SweepProgress(Protocol):
    """What the sweep tells whoever shows it: how many configurations, each one as it starts, each result."""

    def begin(self, total: int, already_done: int) -> None: ...
    def start(self, label: str) -> None: ...
    def result(self, text: str) -> None: ...


class PrintProgress:
    def __init__(self, report: Callable[[str], None] = print):
        self.report = report

    def begin(self, total: int, already_done: int) -> None:
        if already_done:
            self.report(f"{already_done} of {total} configurations already done")

    def start(self, label: str) -> None:
        self.report(label)

    def result(self, text: str) -> None:
        self.report(f"  {text}")


class RunFailed(Exception):
    """A configuration's engine failed; the message is the row's reason."""


def run_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_sweep(config: BenchConfig, out_dir: Path, progress: SweepProgress | None = None, *,
              resume: bool = False) -> Path:
    """Run every configuration of `config`; return the sweep's results folder. With `resume`, configurations
    that already have rows are skipped; without it, a folder that has rows is refused (nothing is overwritten)."""
    folder = out_dir / config.name
    store = ResultsStore(folder)
    done = store.config_ids()
    if done and not resume:
        raise UserError(f"{store.csv_path} already has results; continue it with --resume, or choose another "
                        "`name:` or --out")
    engines = [find_engine(e.name, config.engine_paths()) for e in config.engines]
    models = [resolve_model(m, config) for m in config.models]
    with contextlib.ExitStack() as stack:
        devices, rig_pids = {}, {}
        for engine in engines:
            if config.rpc_rig:
                rpc = stack.enter_context(RpcServer(engine, threads=1, log_path=store.logs / f"rpc-{engine.name}.log"))
                devices[engine.name] = f"RPC0[{rpc.endpoint}]"
                rig_pids[engine.name] = rpc.pid
            elif config.devices:
                devices[engine.name] = config.devices[0]
        nvml = open_nvml() if config.telemetry.enabled else None  # once: nvmlInit can take seconds
        if nvml is not None:
            stack.callback(nvml.close)
        confs = configurations(config, models, engines, devices)
        store.write_meta({
            "moebench_version": __version__, "config": config.model_dump(mode="json"),
            "config_file": str(config.source_path), "host": host_fingerprint(),
            "python": platform.python_version(), "engines": [e.describe() for e in engines],
            "devices": devices, "configurations": len(confs), "started_at": _now(),
        })
        progress = progress or PrintProgress()
        todo = [conf for conf in confs if config_id(config, conf) not in done]
        progress.begin(len(confs), len(confs) - len(todo))
        for conf in todo:
            others = {pid for name, pid in rig_pids.items() if name != conf.engine.name}
            _run_configuration(config, store, conf, progress, _sampler(config, others, nvml))
    return folder


def _base_row(config: BenchConfig, conf: Configuration) -> dict:
    engine: Engine = conf.engine
    memory = conf.memory
    return {
        "sweep": config.name, "tool": conf.tool, "strategy": conf.strategy or "",
        "strategy_params": conf.params or "", "placement": conf.placement.describe() if conf.placement else "",
        "device": conf.target.buffer_type if conf.target else "", "repetitions": config.bench.repetitions,
        "engine": engine.name, "engine_dialect": engine.dialect, "engine_version": engine.version,
        "engine_build": engine.build_number, "engine_commit": engine.commit,
        "model": conf.model.label, "model_file": str(conf.model.path), "model_arch": conf.model.info.architecture,
        "model_quant": next(iter(conf.model.info.quant_bytes), ""),  # the type holding the most bytes
        "model_size_bytes": conf.model.path.stat().st_size, "threads": config.bench.threads,
        "predicted_vram_bytes": memory.vram_bytes if memory else None,
        "predicted_ram_bytes": memory.ram_bytes if memory else None,
        "predicted_model_buffers": conf.predicted_buffers, **host_fingerprint(),
    }


def config_id(config: BenchConfig, conf: Configuration) -> str:
    """What makes a configuration the same one: model identity, engine build, tool, placement, bench settings.
    Device names are left out: the RPC rig's port changes from run to run."""
    return run_id(conf.model.identity, conf.engine.name, conf.engine.version, conf.tool, conf.strategy,
                  conf.params, conf.engine_args, config.bench.model_dump())


def _sampler(config: BenchConfig, other_rig_pids: set[int], nvml) -> Sampler | None:
    """A sampler of whatever this harness is running now (the engine, and its RPC server on the rig), not the
    other engines' RPC servers."""
    if not config.telemetry.enabled:
        return None
    return Sampler(lambda: [pg for pg in procs.live_groups() if pg not in other_rig_pids], config.telemetry.hz,
                   loopback=config.rpc_rig, nvml=nvml if nvml is not None else False)


def _run_configuration(config: BenchConfig, store: ResultsStore, conf: Configuration,
                       progress: SweepProgress, sampler: Sampler | None = None) -> None:
    rid = config_id(config, conf)
    row = {**_base_row(config, conf), "run_id": rid, "config_id": rid, "log_file": f"logs/{rid}.log"}
    progress.start(conf.label)
    if conf.error:
        store.append({**row, "status": "failed", "reason": f"cannot place: {conf.error}"})
        progress.result(f"failed: {conf.error}")
        return
    if conf.memory is not None and conf.memory.fits is False:
        store.append({**row, "status": "skipped: predicted-oom",
                      "reason": f"predicted {conf.memory.vram_bytes / 2**20:.0f} MiB on the accelerator, "
                                f"budget {conf.memory.budget_bytes / 2**20:.0f} MiB"})
        progress.result("skipped: predicted-oom")
        return
    log_path = store.logs / f"{rid}.log"
    started = time.monotonic()
    row["started_at"] = _now()
    try:
        with contextlib.ExitStack() as held:
            if config.vram_limit_gib:  # reserved for this run only, released on every exit path
                held.enter_context(VramReservation(config.vram_limit_device, config.vram_limit_gib))
            if sampler is not None:
                held.enter_context(sampler)
            measured = _measure(config, conf, log_path, store)
    except RunFailed as exc:
        store.append({**row, "finished_at": _now(), "duration_s": round(time.monotonic() - started, 3),
                      "status": "failed", "reason": str(exc)[:2000], **_telemetry_file(store, rid, sampler)})
        progress.result(f"failed: {str(exc).splitlines()[0][:200]}")
        return
    loaded = parse_report(log_path.read_text(errors="replace"))
    row.update(finished_at=_now(), duration_s=round(time.monotonic() - started, 3),
               actual_model_buffers=loaded.model_bytes_by_device if loaded else None)
    phase_columns = {test.name: _phase_telemetry(sampler, test) for test, _ in measured}  # marks the windows
    row.update(_telemetry_file(store, rid, sampler))
    for test, argv in measured:
        store.append({**row, "run_id": run_id(rid, test.name), "status": "ok", "reason": "", "test": test.name,
                      "command": argv,
                      "n_prompt": test.n_prompt, "n_gen": test.n_gen, "n_depth": test.n_depth,
                      "tps_mean": round(test.tps_mean, 3), "tps_stddev": round(test.tps_stddev, 3),
                      "tps_samples": [round(s, 3) for s in test.tps_samples],
                      "model_n_params": test.raw.get("model_n_params"), **_ttft_columns(test),
                      **phase_columns[test.name]})
        progress.result(f"{test.name}: {test.tps_mean:.1f} ± {test.tps_stddev:.1f} tokens/s")


def _measure(config: BenchConfig, conf: Configuration, log_path: Path, store: ResultsStore):
    if not conf.engine.has(conf.tool):
        raise RunFailed(f"engine {conf.engine.name} has no {conf.tool}")
    if conf.tool == "llama-bench":
        return _measure_llama_bench(config, conf, log_path, store.logs)
    if conf.tool == "llama-sweep-bench":
        return _measure_sweep_bench(config, conf, log_path, store.logs)
    return _measure_llama_server(config, conf, log_path)


def _telemetry_file(store: ResultsStore, rid: str, sampler: Sampler | None) -> dict:
    if sampler is None:
        return {}
    path = store.folder / "telemetry" / f"{rid}.csv.gz"
    path.parent.mkdir(exist_ok=True)
    sampler.write_csv_gz(path)
    _write_phase_windows(path, sampler)
    return {"telemetry_file": str(path.relative_to(store.folder)), "telemetry_warnings": sampler.warnings or ""}


def _write_phase_windows(telemetry_path: Path, sampler: Sampler) -> None:
    """`<id>.phases.json` beside the time series: each test's windows in its time (`t_s`), for the timeline."""
    phases = {name: windows for name, (windows, _tokens) in sampler.phases.items()}
    tmp = telemetry_path.with_name(telemetry_path.name.replace(".csv.gz", ".phases.json.tmp"))
    tmp.write_text(json.dumps(phases))
    tmp.replace(telemetry_path.with_name(telemetry_path.name.replace(".csv.gz", ".phases.json")))


def _phase_telemetry(sampler: Sampler | None, test: BenchTest) -> dict:
    """The test's own phase windows (process lifetime, or request timestamps) summarized from the samples."""
    windows = test.raw.get("windows_mono")
    if sampler is None or not windows:
        return {}
    offset = time.monotonic() - sampler.now()  # monotonic -> sampler time
    for start, end in windows:
        sampler.mark_phase(test.name, start - offset, end - offset, test.tokens / len(windows))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sampler.summarize(test.name).items()}


def _ttft_columns(test: BenchTest) -> dict:
    samples = test.raw.get("ttft_ms")
    if not samples:
        return {}
    return {"ttft_ms_mean": round(sum(samples) / len(samples), 3), "ttft_ms_samples": [round(s, 3) for s in samples]}


def _failure(reason: str, output_tail: str) -> RunFailed:
    tail = " | ".join(line.strip() for line in output_tail.strip().splitlines()[-5:])
    return RunFailed(f"{reason}: {tail}" if tail else reason)


def _measure_llama_bench(config: BenchConfig, conf: Configuration, log_path: Path, cwd: Path):
    """One llama-bench process per test (a prompt size or a generation size, at each depth): the process's
    lifetime is then that phase's window, for telemetry, and no test depends on what ran before it."""
    bench = config.bench
    phases = [(p, 0, d) for p in bench.prompt_tokens if p for d in bench.depth]
    phases += [(0, g, d) for g in bench.gen_tokens if g for d in bench.depth]
    commands, tests = [], []
    for n_prompt, n_gen, depth in phases:
        settings = bench.model_copy(update={"prompt_tokens": [n_prompt], "gen_tokens": [n_gen], "depth": [depth]})
        # -v: the engine's load report (what it placed where) goes to the log
        argv = bench_argv(conf.engine.tool("llama-bench"), conf.model.path, settings, conf.engine.dialect,
                          [*conf.extra_args, "-v"])
        stdout_path = log_path.with_suffix(f".{len(commands)}.json")
        result = procs.run(argv, timeout_s=config.timeouts.run_s, log_path=log_path, stdout_path=stdout_path,
                           cwd=cwd)
        exited = time.monotonic()
        if not result.ok:
            raise _failure(result.describe_failure(), result.output_tail)
        try:
            found = parse_bench_json(stdout_path.read_text(errors="replace"))
        except BenchOutputError as exc:
            raise _failure(str(exc), result.output_tail) from None
        for test in found:  # the measured repetitions end the process: [exit - engine's measured time, exit]
            measured = test.measured_s or result.duration_s
            test.raw["windows_mono"] = [(exited - measured, exited)]
        commands.append(argv)
        tests += [(test, argv) for test in found]
    return tests


def _measure_sweep_bench(config: BenchConfig, conf: Configuration, log_path: Path, cwd: Path):
    argv = sweep_bench_argv(conf.engine.tool(conf.tool), conf.model.path, config.bench, conf.extra_args)
    stdout_path = log_path.with_suffix(".out")
    started = time.monotonic()
    result = procs.run(argv, timeout_s=config.timeouts.run_s, log_path=log_path, stdout_path=stdout_path, cwd=cwd)
    if not result.ok:
        raise _failure(result.describe_failure(), result.output_tail)
    try:
        # the table goes to stdout or, through ik's logger, to stderr: read both
        text = stdout_path.read_text(errors="replace") + log_path.read_text(errors="replace")
        tests = parse_sweep_table(text)
        for test in tests:  # one process for all depths: telemetry covers the whole sweep
            test.raw["windows_mono"] = [(started, started + result.duration_s)]
        return [(test, argv) for test in tests]
    except BenchOutputError as exc:
        raise _failure(str(exc), result.output_tail) from None


def _measure_llama_server(config: BenchConfig, conf: Configuration, log_path: Path):
    try:
        argv, tests = measure_server(conf.engine.tool(conf.tool), conf.model.path, conf.model.info.vocab_size,
                                     config.bench, conf.extra_args, log_path, config.timeouts.run_s)
        return [(test, argv) for test in tests]
    except ServerError as exc:
        tail = log_path.read_text(errors="replace") if log_path.exists() else ""
        raise _failure(str(exc), tail[-4000:]) from None


