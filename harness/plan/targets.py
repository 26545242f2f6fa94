"""Which real device a placement's accelerator is, for one engine binary: a device named by the user
(`CUDA0`, `Vulkan1`, `RPC0[127.0.0.1:50052]`), or the first accelerator the engine lists."""

from __future__ import annotations

import re

from harness.engines import probe
from harness.engines.discover import Engine
from harness.errors import UserError
from harness.plan.flags import Target

_RPC_NAME = re.compile(r"^RPC(\d+)\[([^\]]+)\]$")


def resolve_target(engine: Engine, tool: str, device: str | None = None, rpc: list[str] | None = None) -> Target:
    binary = engine.tool(tool)
    endpoints = list(rpc or [])
    if device:
        m = _RPC_NAME.match(device)
        if m and m.group(2) not in endpoints:
            endpoints.append(m.group(2))  # an RPC device brings its -rpc host:port along
        if device.startswith("RPC") and not m:
            raise UserError(f"name an RPC device with its server, e.g. RPC0[127.0.0.1:50052], not {device!r}")
    else:
        devices = engine.devices(rpc=endpoints)
        if devices is None:
            raise UserError(f"engine {engine.name} ({engine.dialect}) cannot list its devices; "
                            "name the accelerator with --device (e.g. CUDA0 or RPC0[host:port])")
        accelerators = [d for d in devices if d.is_accelerator]
        if not accelerators:
            raise UserError(f"engine {engine.name} lists no accelerator (a CPU-only build); name an RPC device "
                            "with --device RPC0[host:port] or use a GPU build")
        first = accelerators[0]
        device = f"{first.name}[{first.description}]" if first.name.startswith("RPC") else first.name
    # mainline's -dev takes the device name (RPC0), its -ot the buffer type (RPC0[host:port]); ik names
    # devices like buffers in both
    m = _RPC_NAME.match(device)
    device_name = f"RPC{m.group(1)}" if m and engine.dialect == "mainline" else device
    help_text = probe.help_text(binary)
    accepted = frozenset(flag for flag, value in (("-ot", "moebench-probe=CPU"),)
                         if flag not in help_text and tool != "llama-bench" and probe.accepts(binary, flag, value))
    return Target(engine.dialect, tool, help_text, device_name, device, tuple(endpoints), accepted)
