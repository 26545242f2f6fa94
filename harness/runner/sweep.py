"""Run a bench.yaml: every configuration (model x strategy point x knob values x engine x tool, from
`harness.plan.planner`) in `processes` fresh, supervised engine processes, run in interleaved rounds
(`harness.runner.schedule`); one row per measured test of each process appended to the results store, with its
interval over the processes so far and its stability warnings. A configuration predicted not to fit becomes a
`skipped: predicted-oom` row, one that cannot be compiled or whose engine fails becomes a `failed` row with the
reason and the tail of its log, and runs no more; the sweep goes on."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Protocol

from harness import __version__, procs
from harness.config import BenchConfig, BenchSettings
from harness.cpus import CpuBudget, cpu_list, cpu_budget
from harness.errors import UserError
from harness.gpu.vram_limit import VramReservation
from harness.hostinfo import host_fingerprint
from harness.perf.configs import Predictor, PredictedTest, planned_tests
from harness.plan.load_report import parse_report
from harness.plan.planner import Configuration, accelerator_devices, check_knobs, find_engines, plan, stable_id
from harness.plan.request import request_from_config
from harness.plan.stored import configuration_record, write_configurations
from harness.runner.commands import commands
from harness.runner.measure import ProcessSettings, RunFailed, measure
from harness.runner.rig import start_rig
from harness.runner.rows import (base_record, model_columns, phase_telemetry, planned_test, telemetry_file,
                                 ttft_columns)
from harness.runner.schedule import Schedule, history_from_rows
from harness.runner.stability import row_warnings
from harness.results.store import ResultsStore
from harness.telemetry import Sampler, shared_nvml
from harness.warnings import encode_warnings


class SweepProgress(Protocol):
    """What the sweep tells whoever shows it: how many processes, each one as it starts, each result."""

    def begin(self, total: int, already_done: int) -> None: ...
    def start(self, label: str) -> None: ...
    def result(self, text: str) -> None: ...


class PrintProgress:
    def __init__(self, report: Callable[[str], None] = print):
        self.report = report

    def begin(self, total: int, already_done: int) -> None:
        if already_done:
            self.report(f"{already_done} of {total} processes already done")

    def start(self, label: str) -> None:
        self.report(label)

    def result(self, text: str) -> None:
        self.report(f"  {text}")


run_id = stable_id  # a row's id: its configuration, process and test


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class RunSettings:
    """What a measuring process needs of the sweep: its name, the bench settings, the run limit and the
    emulated card (reserved for each run)."""

    name: str
    bench: BenchSettings
    timeout_s: float
    vram_limit_gib: float | None = None
    vram_limit_device: int = 0

    @classmethod
    def of(cls, config: BenchConfig) -> "RunSettings":
        return cls(config.name, config.bench, config.timeouts.run_s, config.vram_limit_gib, config.vram_limit_device)


@dataclass
class SweepRun:
    """One sweep under way: where its rows go, its rounds, its CPU budget, who is told, and what the plan
    predicted of each configuration's tests (by configuration id, then `key_of_test`; stored in
    configurations.json), which its rows' model columns are read from."""

    settings: RunSettings
    store: ResultsStore
    schedule: Schedule
    budget: CpuBudget
    progress: SweepProgress
    predictions: Mapping[str, Mapping[str, PredictedTest]]


def run_sweep(config: BenchConfig, out_dir: Path, progress: SweepProgress | None = None, *,
              resume: bool = False) -> Path:
    """Run every configuration of `config`; return the sweep's results folder. With `resume`, the processes
    that already have rows are not run again; without it, a folder that has rows is refused (nothing is
    overwritten)."""
    folder = out_dir / config.name
    store = ResultsStore(folder)
    history = history_from_rows(store.rows())
    if history and not resume:
        raise UserError(f"{store.csv_path} already has results; continue it with --resume, or choose another "
                        "`name:` or --out")
    request = request_from_config(config)
    engines = find_engines(request)
    budget = cpu_budget(config.rpc_rig)
    check_knobs(request, engines, budget)  # before anything is written or started
    with contextlib.ExitStack() as stack:
        rig = start_rig(stack, config, engines, budget, store.logs)  # the RPC servers, one or more per engine
        planned = plan(replace(request, write_models=True, rpc_endpoints=rig.endpoints))
        confs = {conf.id: conf for conf in planned}
        predictor = Predictor.for_configurations(planned)  # the performance model, where calibrated
        predictions = {conf.id: planned_tests(predictor, conf, config.bench) for conf in planned}
        write_configurations(folder, [
            configuration_record(conf, commands(conf, config.bench),
                                 {key: test.to_dict() for key, test in predictions[conf.id].items()})
            for conf in planned])
        nvml = shared_nvml() if config.telemetry.enabled else None  # the planner's and fingerprint's session
        store.write_meta({
            "moebench_version": __version__, "config": config.model_dump(mode="json"),
            "config_file": str(config.source_path), "host": host_fingerprint(),
            "python": platform.python_version(), "engines": [e.describe() for e in engines],
            "devices": accelerator_devices(request, engines, rig.endpoints), "configurations": len(confs),
            "started_at": _now(), "cpus": {"engine": cpu_list(budget.engine_cpus), "rpc": budget.describe_rpc()},
        })
        schedule = Schedule(list(confs), config.bench.processes, config.bench.until, seed=config.order.seed,
                            shuffle=config.order.random, history=history)
        run = SweepRun(RunSettings.of(config), store, schedule, budget, progress or PrintProgress(), predictions)
        run.progress.begin(*schedule.progress_counts())
        for round_, ids in schedule.rounds():
            for cid in ids:
                conf = confs[cid]
                sampler = _sampler(config, rig.other_pids(conf.engine.name), nvml)
                _run_process(run, conf, round_, sampler)
    return folder


def _sampler(config: BenchConfig, other_rig_pids: set[int], nvml) -> Sampler | None:
    """A sampler of whatever this harness is running now (the engine, and its RPC server on the rig), not the
    other engines' RPC servers."""
    if not config.telemetry.enabled:
        return None
    return Sampler(lambda: [pg for pg in procs.live_groups() if pg not in other_rig_pids], config.telemetry.hz,
                   loopback=config.rpc_rig, nvml=nvml if nvml is not None else False)


def _run_process(run: SweepRun, conf: Configuration, round_: int, sampler: Sampler | None) -> None:
    """Round `round_` of one configuration: one measuring process (for llama-bench, one per test)."""
    settings, store, schedule, budget, progress = run.settings, run.store, run.schedule, run.budget, run.progress
    cid = conf.id
    history = schedule.history[cid]
    record = base_record(settings, conf).update(
        config_id=cid, process_index=round_, cpus=cpu_list(budget.engine_cpus), rpc_cpus=budget.describe_rpc(),
        run_id=run_id(cid, round_))
    progress.start(f"[{round_ + 1}/{max(schedule.processes, round_ + 1)}] {conf.label}")

    def finish(status: str, reason: str, **more) -> None:
        store.append(record.updated(**more, status=status, reason=reason))
        history.record(round_, status, None, None, None)
        progress.result(f"{status}: {reason.splitlines()[0][:200]}" if reason else status)

    if conf.error:
        return finish("failed", conf.error)
    if conf.memory is not None and conf.memory.fits is False:
        return finish("skipped: predicted-oom", conf.memory.oom_reason(conf.device_names))
    suffix = f".p{round_}" if round_ else ""
    log_path = store.logs / f"{cid}{suffix}.log"
    record.log_file = str(log_path.relative_to(store.folder))
    process = ProcessSettings(settings.bench, budget.engine_cpus, settings.timeout_s)
    started = time.monotonic()
    record.started_at = _now()
    try:
        with contextlib.ExitStack() as held:
            if settings.vram_limit_gib:  # reserved for this run only, released on every exit path
                held.enter_context(VramReservation(settings.vram_limit_device, settings.vram_limit_gib))
            if sampler is not None:
                held.enter_context(sampler)
            measured = measure(conf, process, log_path)
    except RunFailed as exc:
        return finish("failed", str(exc)[:2000], finished_at=_now(),
                      duration_s=round(time.monotonic() - started, 3),
                      **telemetry_file(store, f"{cid}{suffix}", sampler))
    loaded = parse_report(log_path.read_text(errors="replace"))
    record.update(finished_at=_now(), duration_s=round(time.monotonic() - started, 3))
    record.device_bytes("actual_model_bytes", loaded.model_bytes_by_device if loaded else None)
    record.device_bytes("actual_kv_bytes", loaded.state_bytes_by_device if loaded else None)
    record.device_bytes("actual_compute_bytes", loaded.compute_bytes_by_device if loaded else None)
    phases = {test.name: phase_telemetry(sampler, test) for test, _ in measured}  # marks the windows
    record.update(**telemetry_file(store, f"{cid}{suffix}", sampler))
    oversubscribed = budget.oversubscribed(max(conf.threads, conf.knobs.threads_batch or 0))
    rows, shown = [], []
    for test, argv in measured:
        history.record(round_, "ok", test.name, test.tps_mean, test.tps_samples)
        ci = history.interval(test.name)
        warnings = row_warnings(repetitions=test.tps_samples, sample_ms=test.sample_ms, ci=ci,
                                process_means=history.means[test.name], oversubscribed=oversubscribed,
                                telemetry=phases[test.name], n_cpus=os.cpu_count() or 1)
        rows.append(record.updated(
            run_id=run_id(cid, round_, test.name), status="ok", reason="", warnings=encode_warnings(warnings),
            test=test.name, command=argv, n_prompt=test.n_prompt, n_gen=test.n_gen, n_depth=test.n_depth,
            tps_mean=round(test.tps_mean, 3), tps_stddev=round(test.tps_stddev, 3),
            tps_samples=[round(s, 3) for s in test.tps_samples], tps_ci_low=_round(ci.low),
            tps_ci_high=_round(ci.high), sample_ms_mean=_round(test.sample_ms),
            model_n_params=test.model_n_params, **ttft_columns(test), **phases[test.name],
            **model_columns(planned_test(run.predictions.get(cid, {}), test), test.tps_mean,
                            loaded.graph_splits if loaded else None)))
        line = f"{test.name} {test.tps_mean:.1f} t/s"  # short: the closing summary has the rest
        if ci.n >= 2:
            line += f" (±{ci.half_width_pct:.0f}% over {ci.n} {ci.unit})"
        shown.append(line + (f" [{', '.join(dict.fromkeys(w.kind for w in warnings))}]" if warnings else ""))
    store.append(*rows)  # the process's rows together: a resumed sweep never finds it half recorded
    for line in shown:
        progress.result(line)


def _round(value: float | None) -> float | None:
    if value is None or value != value:  # NaN
        return None
    return round(value, 3)
