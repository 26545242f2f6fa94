"""The exact argument lists of a configuration: what `moebench run` executes (`harness.runner.measure`) and
`moebench plan` prints, built by the same functions: its tool's (`harness.tools`). Each is the tool's own part
(model, tests, context, port), then the configuration's knob arguments, its placement flags, the engine's
`engine_args`, and what makes the engine log its load report.

- llama-bench: one process per test (a prompt size or a generation size, at each depth), so one list each.
- llama-sweep-bench (ik): one process, every depth.
- llama-server: one server; its port is chosen when it starts (`SERVER_PORT` in a plan).
"""

from __future__ import annotations

from harness.config import BenchSettings
from harness.plan.planner import Configuration
from harness.tools import SERVER_PORT


def commands(conf: Configuration, bench: BenchSettings, *, port: int | str = SERVER_PORT) -> list[list[str]]:
    """Every argument list one process round of `conf` runs (none when it cannot run)."""
    if conf.error:
        return []
    return conf.engine_tool.commands(conf, bench, port=port)
