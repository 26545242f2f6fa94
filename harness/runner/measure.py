"""One process of one configuration, measured with its tool (`harness.tools`: llama-bench one fresh process
per test, ik's llama-sweep-bench one process for every depth, llama-server one server for every test). Each
returns the tests it measured with the exact argument list that ran; an engine that fails raises `RunFailed`
with the reason and the tail of its log."""

from __future__ import annotations

from pathlib import Path

from harness.plan.planner import Configuration
from harness.tools.measurement import BenchTest, ProcessSettings, RunFailed

__all__ = ["ProcessSettings", "RunFailed", "measure"]


def measure(conf: Configuration, settings: ProcessSettings, log_path: Path) -> list[tuple[BenchTest, list[str]]]:
    """One process round of a configuration the planner could place (an engine without the tool is its
    `error`, a failed row before anything runs)."""
    return conf.engine_tool.measure(conf, settings, log_path)
