"""The engine tools by name: `tool_named("llama-server")`; an unknown name is a `UserError` with a suggestion."""

from __future__ import annotations

from harness.errors import unknown_name
from harness.tools.base import Tool
from harness.tools.llama_bench import LlamaBenchTool
from harness.tools.llama_server import LlamaServerTool
from harness.tools.sweep_bench import SweepBenchTool

TOOLS: dict[str, Tool] = {tool.name: tool for tool in (LlamaBenchTool(), LlamaServerTool(), SweepBenchTool())}
TOOL_NAMES = tuple(TOOLS)  # llama-bench, llama-server, llama-sweep-bench


def tool_named(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise unknown_name("tool", name, TOOLS, "tools") from None
