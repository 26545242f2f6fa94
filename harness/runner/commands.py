"""The exact argument lists of a configuration: what `moebench run` executes (`harness.runner.measure`) and
`moebench plan` prints, built by the same functions. Each is the tool's own part (model, tests, context,
port), then the configuration's knob arguments, its placement flags, the engine's `engine_args`, and what makes
the engine log its load report.

- llama-bench: one process per test (a prompt size or a generation size, at each depth), so one list each.
- llama-sweep-bench (ik): one process, every depth.
- llama-server: one server; its port is chosen when it starts (`SERVER_PORT` in a plan).
"""

from __future__ import annotations

from harness.config import BenchSettings
from harness.plan.planner import Configuration
from harness.runner.llama_bench import bench_argv
from harness.runner.llama_server import server_argv
from harness.runner.server_bench import server_args
from harness.runner.sweep_bench import sweep_bench_argv

SERVER_PORT = "SERVER_PORT"  # what `moebench plan` shows for llama-server's port


def configuration_args(conf: Configuration) -> list[str]:
    """Knob arguments, placement flags, then bench.yaml's engine_args (last: they can override)."""
    return [*conf.knob_args, *conf.placement_args, *conf.engine_args]


def log_args(conf: Configuration) -> list[str]:
    """What makes the engine print its load report: llama-bench `-v`; mainline's llama-server `-lv 4` (ik's
    server and sweep-bench always print it)."""
    if conf.tool == "llama-bench":
        return ["-v"]
    if conf.tool == "llama-server" and conf.engine.dialect == "mainline" and conf.syntax and conf.syntax.has("-lv"):
        return ["-lv", "4"]
    return []


def bench_phases(bench: BenchSettings) -> list[BenchSettings]:
    """llama-bench's tests, one process each: every prompt size, then every generation size, at each depth."""
    phases = [(p, 0, d) for p in bench.prompt_tokens if p for d in bench.depth]
    phases += [(0, g, d) for g in bench.gen_tokens if g for d in bench.depth]
    return [bench.model_copy(update={"prompt_tokens": [p], "gen_tokens": [g], "depth": [d]}) for p, g, d in phases]


def llama_bench_commands(conf: Configuration, bench: BenchSettings) -> list[list[str]]:
    binary = conf.engine.tool("llama-bench")
    extra = [*configuration_args(conf), *log_args(conf)]
    return [bench_argv(binary, conf.model.path, phase, extra) for phase in bench_phases(bench)]


def sweep_bench_command(conf: Configuration, bench: BenchSettings) -> list[str]:
    return sweep_bench_argv(conf.engine.tool(conf.tool), conf.model.path, bench,
                            [*configuration_args(conf), *log_args(conf)])


def llama_server_args(conf: Configuration, bench: BenchSettings) -> list[str]:
    """Everything after `--port`."""
    return server_args(bench, [*configuration_args(conf), *log_args(conf)])


def commands(conf: Configuration, bench: BenchSettings, *, port: int | str = SERVER_PORT) -> list[list[str]]:
    """Every argument list one process round of `conf` runs (none when it cannot run)."""
    if conf.error:
        return []
    if conf.tool == "llama-bench":
        return llama_bench_commands(conf, bench)
    if conf.tool == "llama-sweep-bench":
        return [sweep_bench_command(conf, bench)]
    return [server_argv(conf.engine.tool(conf.tool), conf.model.path, port, llama_server_args(conf, bench))]
