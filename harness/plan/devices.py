"""A sweep's accelerators for the planner: which real devices accel0, accel1, ... are for each engine, their
VRAM budgets, and the split a strategy gets when bench.yaml gives it none (the budgets' proportions).

On the RPC rig the devices are the engine's own servers (`RPC0[127.0.0.1:PORT]`, one per server); `moebench
plan` shows their ports as placeholders (`RPC_PORT`, `RPC_PORT_1`, ...), chosen when the run starts them."""

from __future__ import annotations

import re

from harness.config_devices import budgets_mib, device_count, rig_servers
from harness.plan.placement import accel
from harness.plan.request import PlanRequest
from harness.telemetry.nvml import shared_nvml
from harness.units import GIB, MIB

RPC_PORT = "RPC_PORT"          # what `moebench plan` shows for the RPC rig's port, chosen when the run starts
_CUDA = re.compile(r"^CUDA(\d+)$")


def rig_placeholder(index: int) -> str:
    return f"127.0.0.1:{RPC_PORT}" + (f"_{index}" if index else "")


def accelerator_devices(config: PlanRequest, engines, rpc_endpoints: dict | None = None) -> dict[str, list[str]]:
    """Each engine's accelerators by engine name (accel0 first): on the RPC rig its own servers
    (`rpc_endpoints`: engine name -> endpoint or list of endpoints; else placeholders), else the configured
    devices, else one device per `rpc` server; an empty list: the first accelerator the engine lists."""
    if config.rpc_rig:
        out = {}
        for engine in engines:
            given = (rpc_endpoints or {}).get(engine.name)
            endpoints = [given] if isinstance(given, str) else list(given or [])
            endpoints = endpoints or [rig_placeholder(i) for i in range(rig_servers(config.rpc_rig))]
            out[engine.name] = [f"RPC0[{endpoint}]" for endpoint in endpoints]
        return out
    names = list(config.devices) or [f"RPC0[{endpoint}]" for endpoint in config.rpc]
    return {e.name: list(names) for e in engines}


def vram_budgets(config: PlanRequest) -> int | dict[str, int] | None:
    """The VRAM budget of each accelerator (`accel0` -> bytes), or one for all: bench.yaml's
    `vram_budget_mib`, else the size of an emulated card, else the free memory NVML reports for each CUDA device
    named (or GPU 0 when the engine picks its device), else unknown."""
    configured = budgets_mib(config)
    if configured is not None:
        if isinstance(config.vram_budget_mib, list):
            return {accel(i): int(b * MIB) for i, b in enumerate(configured)}
        return int(configured[0] * MIB)
    if config.vram_limit_gib is not None:
        return int(config.vram_limit_gib * GIB)
    if config.rpc_rig or config.rpc:
        return None  # an RPC server's memory is not on this host's GPUs
    nvml = shared_nvml()
    if nvml is None:
        return None
    if not config.devices:
        return nvml.free_bytes(0)
    out = {}
    for i, name in enumerate(config.devices):
        m = _CUDA.match(name)
        free = nvml.free_bytes(int(m.group(1))) if m else None  # NVML's index order = CUDA's with PCI_BUS_ID
        if free is not None:
            out[accel(i)] = free
    return out or None


def default_split(config: PlanRequest) -> list[float] | None:
    """The split of a strategy that names none, with several devices: the configured budgets' proportions
    (equal without per-device budgets); None with one device. Only what bench.yaml says is used (never NVML's
    free memory), so that plan and run make the same configurations."""
    count = device_count(config)
    if not count or count < 2:
        return None
    budgets = config.vram_budget_mib
    if isinstance(budgets, list):
        return [int(b) if float(b).is_integer() else float(b) for b in budgets]
    return [1] * count
