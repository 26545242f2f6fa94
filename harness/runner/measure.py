"""One process of one configuration, measured with its tool: llama-bench (one fresh process per test, so each
phase has its own process window), ik's llama-sweep-bench (one process, every depth), or llama-server (one
server, every test through HTTP). Each returns the tests it measured with the exact argument list that ran;
an engine that fails raises `RunFailed` with the reason and the tail of its log."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.config import BenchSettings
from harness.plan.planner import Configuration
from harness.runner.commands import llama_bench_commands, llama_server_args, sweep_bench_command
from harness.runner.llama_bench import BenchOutputError, BenchTest, parse_bench_json
from harness.runner.llama_server import ServerError
from harness.runner.server_bench import measure_server
from harness.runner.sweep_bench import parse_sweep_table


class RunFailed(Exception):
    """A configuration's engine failed; the message is the row's reason."""


@dataclass(frozen=True)
class ProcessSettings:
    """What one measuring process needs besides its configuration (which carries the knobs and the thread
    count): the sweep's tests, its CPUs, its time limit."""

    bench: BenchSettings
    cpus: tuple[int, ...] | None
    timeout_s: float


def measure(conf: Configuration, settings: ProcessSettings, log_path: Path) -> list[tuple[BenchTest, list[str]]]:
    """One process round of a configuration the planner could place (an engine without the tool is its
    `error`, a failed row before anything runs)."""
    if conf.tool == "llama-bench":
        return _llama_bench(conf, settings, log_path)
    if conf.tool == "llama-sweep-bench":
        return _sweep_bench(conf, settings, log_path)
    return _llama_server(conf, settings, log_path)


def failure(reason: str, output_tail: str) -> RunFailed:
    tail = " | ".join(line.strip() for line in output_tail.strip().splitlines()[-5:])
    return RunFailed(f"{reason}: {tail}" if tail else reason)


def _llama_bench(conf: Configuration, settings: ProcessSettings, log_path: Path):
    """One llama-bench process per test (a prompt size or a generation size, at each depth): the process's
    lifetime is then that phase's window, for telemetry, and no test depends on what ran before it."""
    tests = []
    for i, argv in enumerate(llama_bench_commands(conf, settings.bench)):
        stdout_path = log_path.with_suffix(f".{i}.json")
        result = procs.run(argv, timeout_s=settings.timeout_s, log_path=log_path, stdout_path=stdout_path,
                           cwd=log_path.parent, cpus=settings.cpus)
        exited = time.monotonic()
        if not result.ok:
            raise failure(result.describe_failure(), result.output_tail)
        try:
            found = parse_bench_json(stdout_path.read_text(errors="replace"))
        except BenchOutputError as exc:
            raise failure(str(exc), result.output_tail) from None
        for test in found:  # the measured repetitions end the process: [exit - engine's measured time, exit]
            measured = test.measured_s or result.duration_s
            test.raw["windows_mono"] = [(exited - measured, exited)]
        tests += [(test, argv) for test in found]
    return tests


def _sweep_bench(conf: Configuration, settings: ProcessSettings, log_path: Path):
    """ik's llama-sweep-bench: every depth in one process. Its table gives no timestamps, so its rows get no
    per-phase telemetry (the whole process's figures would misattribute every depth)."""
    argv = sweep_bench_command(conf, settings.bench)
    stdout_path = log_path.with_suffix(".out")
    result = procs.run(argv, timeout_s=settings.timeout_s, log_path=log_path, stdout_path=stdout_path,
                       cwd=log_path.parent, cpus=settings.cpus)
    if not result.ok:
        raise failure(result.describe_failure(), result.output_tail)
    try:
        # the table goes to stdout or, through ik's logger, to stderr: read both
        text = stdout_path.read_text(errors="replace") + log_path.read_text(errors="replace")
        return [(test, argv) for test in parse_sweep_table(text)]
    except BenchOutputError as exc:
        raise failure(str(exc), result.output_tail) from None


def _llama_server(conf: Configuration, settings: ProcessSettings, log_path: Path):
    try:
        argv, tests = measure_server(conf.engine.tool(conf.tool), conf.model.path, conf.model.info.vocab_size,
                                     settings.bench, llama_server_args(conf, settings.bench), log_path,
                                     settings.timeout_s, cpus=settings.cpus)
        return [(test, argv) for test in tests]
    except ServerError as exc:
        tail = log_path.read_text(errors="replace") if log_path.exists() else ""
        raise failure(str(exc), tail[-4000:]) from None
