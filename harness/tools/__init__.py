"""The engine tools moebench measures with, one `Tool` each (`base.py`): llama-bench (`llama_bench.py`),
llama-server (`llama_server.py`, through the supervised process and HTTP client of `server_process.py`), ik's
llama-sweep-bench (`sweep_bench.py`); `registry.tool_named(name)` finds one by name; `measurement.py` holds what
measuring gives and needs (`BenchTest`, `ProcessSettings`, `RunFailed`).

Floors: this package sits below `harness.plan` (the flags need a tool's separators, fit flags and what it can
place; the planner the context it allocates) and `harness.runner` (which measures through it), and imports
neither, nor `harness.config` (which imports the plan's floors): it takes plain arguments, the sweep's tests as
the `BenchTests` protocol and a configuration as the `PlannedRun` protocol. It imports only `harness.procs`,
`harness.errors` and httpx."""

from harness.tools.base import SERVER_PORT, PlannedRun, Tool
from harness.tools.registry import TOOL_NAMES, TOOLS, tool_named

__all__ = ["SERVER_PORT", "TOOLS", "TOOL_NAMES", "PlannedRun", "Tool", "tool_named"]
