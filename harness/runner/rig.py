"""The RPC rig of a sweep: each engine's own RPC servers on loopback (`rpc_rig: true`, or `{servers: N}`),
each server a device with its own CPU set from the budget (`harness.cpus`), started once for the whole sweep
and stopped when it ends."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import BenchConfig
from harness.config_devices import rig_servers
from harness.cpus import CpuBudget, physical_cores
from harness.engines.rpc import RpcServer


@dataclass
class Rig:
    endpoints: dict[str, list[str]] = field(default_factory=dict)   # engine name -> its servers' host:port
    pids: dict[str, list[int]] = field(default_factory=dict)        # engine name -> its servers' pids

    def other_pids(self, engine_name: str) -> set[int]:
        """The servers of the other engines (not sampled with this engine's runs)."""
        return {pid for name, pids in self.pids.items() if name != engine_name for pid in pids}


def start_rig(stack: contextlib.ExitStack, config: BenchConfig, engines, budget: CpuBudget, logs: Path) -> Rig:
    """Start the rig's servers (none without a rig), each held open by `stack`."""
    rig = Rig()
    servers = rig_servers(config.rpc_rig)
    sets = budget.rpc_cpu_sets or ((),) * servers
    for engine in engines if servers else ():
        for i in range(servers):
            cpus = sets[i % len(sets)] or None
            suffix = f"-{i}" if i else ""
            rpc = stack.enter_context(RpcServer(engine, threads=physical_cores(cpus) if cpus else None, cpus=cpus,
                                                log_path=logs / f"rpc-{engine.name}{suffix}.log"))
            rig.endpoints.setdefault(engine.name, []).append(rpc.endpoint)
            rig.pids.setdefault(engine.name, []).append(rpc.pid)
    return rig
