"""The CPU budget of a sweep: which CPUs the engine may use, which the RPC rig's server gets, and how many
threads the engine runs by default. Never more busy threads than cores: ggml's threads spin at their barriers,
so two spinning programs sharing a core both slow down, by an amount that changes from run to run.

- Anywhere but the RPC rig, the engine gets every CPU this process may run on (`sched_getaffinity`) and
  defaults to one thread per physical core among them.
- On the RPC rig the engine and its RPC server (the stand-in accelerator) get disjoint CPU sets, whole
  physical cores each (the engine the larger half), each with one thread per core of its own set. With
  several servers (`rpc_rig: {servers: 2}`) they share the other half out, whole cores each; where there are
  fewer cores than servers, servers share cores (the rows say so: `oversubscribed`).

A configuration given more threads than its CPU set holds still runs; its rows carry a warning
(`oversubscribed`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TOPOLOGY = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class CpuBudget:
    engine_cpus: tuple[int, ...]
    rpc_cpus: tuple[int, ...] | None = None            # every RPC server's CPUs together
    server_cpus: tuple[tuple[int, ...], ...] = ()      # each RPC server's own set (empty: one server, rpc_cpus)

    @property
    def rpc_cpu_sets(self) -> tuple[tuple[int, ...], ...]:
        """Each RPC server's CPU set, in server order."""
        return self.server_cpus or ((self.rpc_cpus,) if self.rpc_cpus else ())

    @property
    def engine_threads(self) -> int:
        """The engine's default thread count: the physical cores in its set."""
        return physical_cores(self.engine_cpus)

    @property
    def rpc_threads(self) -> int | None:
        return physical_cores(self.rpc_cpus) if self.rpc_cpus else None

    def threads(self, asked: int | None) -> int:
        """The thread count an engine runs with: what the user asked for, else the default."""
        return asked or self.engine_threads

    def oversubscribed(self, threads: int) -> str | None:
        """A warning when `threads` busy threads would share fewer CPUs, or RPC servers share CPUs, else None."""
        if threads > len(self.engine_cpus):
            return f"oversubscribed: {threads} threads on {len(self.engine_cpus)} CPUs ({cpu_list(self.engine_cpus)})"
        sets = self.rpc_cpu_sets
        if len(sets) > 1 and len(set().union(*sets)) < sum(len(s) for s in sets):
            return f"oversubscribed: {len(sets)} RPC servers share CPUs ({self.describe_rpc()})"
        return None

    def describe_rpc(self) -> str:
        """The RPC servers' CPU sets, `/` between servers (`1/1`: two servers on CPU 1)."""
        return "/".join(cpu_list(s) for s in self.rpc_cpu_sets)


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask; all online CPUs where there is no such call)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def core_of(cpu: int) -> tuple[int, int]:
    """(package, core) of a logical CPU: SMT siblings share it. Without the sysfs topology, each CPU is a core."""
    try:
        package = int((_TOPOLOGY / f"cpu{cpu}/topology/physical_package_id").read_text())
        core = int((_TOPOLOGY / f"cpu{cpu}/topology/core_id").read_text())
        return package, core
    except (OSError, ValueError):
        return -1, cpu


def physical_cores(cpus) -> int:
    return max(len({core_of(c) for c in cpus}), 1) if cpus else 0


def cpu_budget(rpc_rig, cpus: tuple[int, ...] | None = None) -> CpuBudget:
    """The sweep's CPU budget (see the module docstring). `rpc_rig`: false/None (no rig), true (one server),
    a server count, or bench.yaml's `rpc_rig` setting (its `servers`). With a single core the rig cannot be
    split: all share it (and the rows say so through the oversubscription warning)."""
    cpus = tuple(sorted(cpus if cpus is not None else available_cpus()))
    servers = rpc_rig if isinstance(rpc_rig, int) else getattr(rpc_rig, "servers", int(bool(rpc_rig)))
    if not servers:
        return CpuBudget(cpus)
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus:
        cores.setdefault(core_of(cpu), []).append(cpu)
    groups = list(cores.values())
    if len(groups) < 2:
        return CpuBudget(cpus, cpus, (cpus,) * servers if servers > 1 else ())
    split = (len(groups) + 1) // 2  # the engine gets the larger half
    engine = tuple(sorted(c for g in groups[:split] for c in g))
    rest = groups[split:]
    rpc = tuple(sorted(c for g in rest for c in g))
    if servers == 1:
        return CpuBudget(engine, rpc)
    # whole cores per server, as even as they go; with fewer cores than servers, servers share them in turn
    n = len(rest)
    sets = [tuple(sorted(c for g in rest[i * n // servers:(i + 1) * n // servers] for c in g)) if n >= servers
            else tuple(rest[i % n]) for i in range(servers)]
    return CpuBudget(engine, rpc, tuple(sets))


def cpu_list(cpus) -> str:
    """`0-3,6`: the kernel's list format."""
    out, run = [], []
    for cpu in sorted(cpus or ()):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(_span(run))
        run = [cpu]
    if run:
        out.append(_span(run))
    return ",".join(out)


def _span(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"
