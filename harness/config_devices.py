"""bench.yaml's devices: the accelerators a sweep places weights on, and their VRAM budgets.

    devices: [CUDA0, CUDA1]            # accel0, accel1, ... as the engines name them
    rpc: [192.168.1.20:50052]          # remote ggml RPC servers (`--rpc`): one device each (RPC0[host:port])
    rpc_rig: true                      # the test rig: each engine's own RPC server on loopback
    rpc_rig: {servers: 2}              # ... two of them, two devices, each server its own CPU set
    vram_budget_mib: 22000             # every accelerator; or one per device: [22000, 10000]

`devices` may name RPC devices too (`RPC0[host:port]`, `RPC1[host:port]` for a server's second device), in the
order the placements' accel0, accel1, ... should take them; `rpc` alone gives one device per server.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_RPC_DEVICE = re.compile(r"^RPC\d+\[([^\]]+)\]$")


class RpcRig(BaseModel):
    """The test rig: `servers` of each engine's own RPC server on loopback, each a device."""

    model_config = ConfigDict(extra="forbid")
    servers: int = Field(1, ge=1, le=8, description="RPC servers per engine on 127.0.0.1, one device each")


def rig_servers(rpc_rig: bool | RpcRig | None) -> int:
    """How many RPC servers the rig starts per engine (0: no rig)."""
    return rpc_rig.servers if isinstance(rpc_rig, RpcRig) else int(bool(rpc_rig))


def device_count(config: Any) -> int | None:
    """How many accelerators the sweep names; None when the engine picks its first one."""
    if config.rpc_rig:
        return rig_servers(config.rpc_rig)
    if config.devices:
        return len(config.devices)
    return len(config.rpc) or None


def device_problems(config: Any) -> list[tuple[tuple, str]]:
    """(key path, message) for each mistake in the device settings; none: they are consistent."""
    problems: list[tuple[tuple, str]] = []
    if config.rpc_rig and (config.devices or config.rpc):
        problems.append((("rpc_rig",), "the rig starts its own RPC servers on loopback; give either rpc_rig or "
                                       "devices/rpc, not both"))
    for i, endpoint in enumerate(config.rpc):
        if not _ENDPOINT.match(endpoint):
            problems.append((("rpc", i), f"{endpoint!r} is not host:port (e.g. 192.168.1.20:50052)"))
    for i, name in enumerate(config.devices):
        if name.upper().startswith("RPC") and not _RPC_DEVICE.match(name):
            problems.append((("devices", i), f"{name!r}: name an RPC device with its server, e.g. "
                                             "RPC0[192.168.1.20:50052]"))
        if name.upper() == "CPU":
            problems.append((("devices", i), "CPU is not an accelerator: weights on the CPU are what the "
                                             "strategies decide"))
    seen = [d for i, d in enumerate(config.devices) if d in config.devices[:i]]
    if seen:
        problems.append((("devices",), f"{seen[0]} is named twice"))
    budgets = config.vram_budget_mib
    if any(b <= 0 for b in (budgets if isinstance(budgets, list) else [budgets or 1])):
        problems.append((("vram_budget_mib",), f"{budgets}: budgets are MiB > 0"))
    if isinstance(budgets, list):
        count = device_count(config)
        if count is None and len(budgets) > 1:
            problems.append((("vram_budget_mib",), f"{len(budgets)} budgets but no devices named; name them under "
                                                   "`devices:` (or give one number for the accelerator)"))
        elif count is not None and len(budgets) != count:
            problems.append((("vram_budget_mib",), f"{len(budgets)} budgets for {count} device"
                                                   f"{'s' if count != 1 else ''}; give one number for all or "
                                                   f"one per device"))
    return problems


def budgets_mib(config: Any) -> list[float] | None:
    """The configured budget of each device (accel0 first); a single number applies to every device."""
    budgets = config.vram_budget_mib
    if budgets is None:
        return None
    if isinstance(budgets, list):
        return [float(b) for b in budgets]
    return [float(budgets)] * (device_count(config) or 1)
