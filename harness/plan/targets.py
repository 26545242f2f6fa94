"""Which real devices a placement's accelerators are, for one engine binary: devices named by the user
(`CUDA0`, `Vulkan1`, `RPC0[127.0.0.1:50052]`; a list: accel0, accel1, ...), or the first accelerator the engine
lists."""

from __future__ import annotations

import re
from typing import Sequence

from harness.engines import probe
from harness.engines.discover import Engine
from harness.errors import UserError
from harness.plan.flags import Target
from harness.tools import tool_named

_RPC_NAME = re.compile(r"^RPC(\d+)\[([^\]]+)\]$")


def resolve_target(engine: Engine, tool: str, device: str | Sequence[str] | None = None,
                   rpc: list[str] | None = None) -> Target:
    """`device`: one device name, a list of them (accel0 first), or None (the first the engine lists)."""
    binary = engine.tool(tool)
    endpoints = list(rpc or [])
    names = [device] if isinstance(device, str) else list(device or [])
    for name in names:
        m = _RPC_NAME.match(name)
        if m and m.group(2) not in endpoints:
            endpoints.append(m.group(2))  # an RPC device brings its -rpc host:port along
        if name.startswith("RPC") and not m:
            raise UserError(f"name an RPC device with its server, e.g. RPC0[127.0.0.1:50052], not {name!r}")
    if not names:
        names = [_first_accelerator(engine, endpoints)]
    pairs = [(_device_name(engine.dialect, name, endpoints, names), name) for name in names]
    help_text = probe.help_text(binary)
    accepted = frozenset(flag for flag, value in (("-ot", "moebench-probe=CPU"),)
                         if flag not in help_text and tool_named(tool).may_parse_unlisted_flags
                         and probe.accepts(binary, flag, value))
    (device_name, buffer_type), more = pairs[0], tuple(pairs[1:])
    return Target(engine.dialect, tool, help_text, device_name, buffer_type, tuple(endpoints), accepted, more)


def _first_accelerator(engine: Engine, endpoints: list[str]) -> str:
    devices = engine.devices(rpc=endpoints)
    if devices is None:
        raise UserError(f"engine {engine.name} ({engine.dialect}) cannot list its devices; "
                        "name the accelerator with --device (e.g. CUDA0 or RPC0[host:port])")
    accelerators = [d for d in devices if d.is_accelerator]
    if not accelerators:
        raise UserError(f"engine {engine.name} lists no accelerator (a CPU-only build); name an RPC device "
                        "with --device RPC0[host:port] or use a GPU build")
    first = accelerators[0]
    return f"{first.name}[{first.description}]" if first.name.startswith("RPC") else first.name


def _device_name(dialect: str, name: str, endpoints: list[str], names: list[str]) -> str:
    """What `-dev` takes for the device whose buffer type is `name`. ik names devices like buffers. mainline
    names RPC devices RPC0, RPC1, ... in the order the servers' devices are registered (`--rpc` order, each
    server's devices in turn), while their buffer types carry the server's own device index
    (`RPC0[host:port]`): a server's device count is taken as the highest index named for it, plus one."""
    m = _RPC_NAME.match(name)
    if not m or dialect != "mainline":
        return name
    index, endpoint = int(m.group(1)), m.group(2)
    per_server = {ep: 1 for ep in endpoints}
    for other in names:
        n = _RPC_NAME.match(other)
        if n:
            per_server[n.group(2)] = max(per_server.get(n.group(2), 1), int(n.group(1)) + 1)
    before = sum(per_server[ep] for ep in endpoints[:endpoints.index(endpoint)])
    return f"RPC{before + index}"
