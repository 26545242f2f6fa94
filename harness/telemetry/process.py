"""The engine's process tree (and, through `harness.telemetry.host`, the host), sampled through /proc (Linux)
with psutil where /proc has no cheap answer or is missing.

Per sample (keys as they appear in a sampler row):

- `rss_mib`: resident memory of the whole tree (root and all descendants), summed. With mmap (llama.cpp's
  default) the model's file pages that are resident count here too: they are page cache the kernel may
  reclaim, not memory the engine allocated.
- `uss_mib`: unique set size of the tree (what its exit would free), from psutil's `memory_full_info`
  (`/proc/PID/smaps_rollup`), which walks the page tables: slow for a big mapped model. So it is taken at most
  every `uss_every`-th sample, and, after a read that cost c CPU seconds, not again for c / `uss_cpu_share`
  seconds (default: USS never costs more than 0.1 % of a core).
- `cpu_pct`: CPU use of the tree, per-process CPU time over wall time summed (200 = two cores busy; clock-tick
  resolution, 10 ms on most kernels). A process seen for the first time has no baseline yet and adds nothing
  that sample; when no process in the tree has a baseline the key is left out.
- `proc_count`: processes in the tree.
- the host's keys (`ram_available_mib`, `swap_used_mib`, `host_cpu_busy_pct`, `swap_io_pages_s`, and
  `loopback_mib_s` with `loopback=True`): see `harness.telemetry.host`, read in the same call just before the
  tree, so that `host_cpu_busy_pct` and `cpu_pct` cover the same interval.

Cost: each process's `/proc/PID/stat` (state, CPU time, RSS in one read) stays open and is re-read with
`pread`, one system call per process per sample. Descendants are found again every `rescan_every`-th
sample and whenever the roots change, from `/proc/PID/task/TID/children` where the kernel has them, else by
psutil's scan of all processes. A process that exits is dropped (a zombie reads as zeros, so it is dropped
too); an open stat file is bound to its process, so a reused pid is never mistaken for it.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable

import psutil

from harness.telemetry.host import HostSource
from harness.units import MIB

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

RootPids = Callable[[], Iterable[int]]


class _Member:
    """One process of the tree: its stat file kept open (or psutil where there is no /proc), CPU baseline."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd: int | None = None
        self.ps: psutil.Process | None = None
        try:
            self.fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        except FileNotFoundError:
            if os.path.isdir("/proc/self"):
                raise psutil.NoSuchProcess(pid) from None
            self.ps = psutil.Process(pid)  # no /proc: psutil's own way
        self.last: tuple[float, float] | None = None  # (cpu seconds, monotonic)

    def read(self) -> tuple[int, float | None] | None:
        """(RSS bytes, CPU % since the previous read or None), or None when the process has exited."""
        now = time.monotonic()
        if self.fd is not None:
            try:
                data = os.pread(self.fd, 4096, 0)
                fields = data[data.rindex(b")") + 2:].split()
            except (OSError, ValueError):
                return None  # ESRCH: exited and reaped
            if fields[0] in (b"Z", b"X"):
                return None  # exited, not yet reaped: its figures read as zeros
            cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS
            rss = int(fields[21]) * _PAGE
        else:
            try:
                with self.ps.oneshot():
                    if self.ps.status() == psutil.STATUS_ZOMBIE:
                        return None
                    times = self.ps.cpu_times()
                    cpu_s, rss = times.user + times.system, self.ps.memory_info().rss
            except psutil.NoSuchProcess:
                return None
        last, self.last = self.last, (cpu_s, now)
        pct = None if last is None or now <= last[1] else 100.0 * (cpu_s - last[0]) / (now - last[1])
        return rss, pct

    def uss(self) -> int | None:
        try:
            self.ps = self.ps or psutil.Process(self.pid)
            return self.ps.memory_full_info().uss
        except (psutil.Error, OSError):
            return None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    __del__ = close


class ProcessTreeSource:
    """Samples the process trees under the pids `roots()` returns (asked every sample: the engine may not be
    started yet or may be restarted, and an RPC server may run beside it)."""

    def __init__(self, roots: RootPids, *, loopback: bool = False, uss_every: int = 10,
                 uss_cpu_share: float | None = 0.001, rescan_every: int = 10):
        self._roots = roots
        self._host = HostSource(loopback=loopback)
        self.uss_every = max(1, int(uss_every))
        self.uss_cpu_share = uss_cpu_share
        self.rescan_every = max(1, int(rescan_every))
        self._members: dict[int, _Member] = {}
        self._root_set: tuple[int, ...] = ()
        self._count = 0
        self._uss_countdown = 1  # samples until USS is due: the first sample of a tree reads it
        self._uss_not_before = 0.0

    def sample(self) -> dict[str, float]:
        """One sample; never raises for a vanished or unreadable process."""
        row = self._host.sample()
        row.update(self._tree())
        self._count += 1
        return row

    @property
    def loopback(self) -> bool:
        return self._host.loopback

    def close(self) -> None:
        for pid in list(self._members):
            self._forget(pid)
        self._host.close()

    # -- process tree ------------------------------------------------------------------------------------------

    def _tree(self) -> dict[str, float]:
        roots = tuple(sorted({int(p) for p in self._roots() if p}))
        if roots != self._root_set or self._count % self.rescan_every == 0:
            self._rescan(roots)
        rss = cpu = 0.0
        n = with_cpu = 0
        for pid, member in list(self._members.items()):
            got = member.read()
            if got is None:
                self._forget(pid)
                continue
            rss += got[0]
            n += 1
            if got[1] is not None:
                cpu += got[1]
                with_cpu += 1
        if n == 0:
            return {}
        out = {"rss_mib": rss / MIB, "proc_count": float(n)}
        if with_cpu:
            out["cpu_pct"] = cpu
        uss = self._uss()
        if uss is not None:
            out["uss_mib"] = uss / MIB
        return out

    def _uss(self) -> int | None:
        self._uss_countdown -= 1
        if self._uss_countdown > 0 or time.monotonic() < self._uss_not_before:
            return None
        self._uss_countdown = self.uss_every
        started = time.thread_time()
        values = [m.uss() for m in list(self._members.values())]
        if self.uss_cpu_share:
            self._uss_not_before = time.monotonic() + (time.thread_time() - started) / self.uss_cpu_share
        return None if None in values else sum(values)

    def _rescan(self, roots: tuple[int, ...]) -> None:
        if roots != self._root_set:
            for pid in [p for p in self._members if p not in roots]:
                self._forget(pid)  # new roots: the old tree is not ours any more
            self._root_set = roots
        pids: set[int] = set()
        for root in roots:
            pids.update(_tree_pids(root))
        for pid in [p for p in self._members if p not in pids]:
            self._forget(pid)
        for pid in pids - self._members.keys():
            try:
                self._members[pid] = _Member(pid)
            except (psutil.Error, OSError):
                continue

    def _forget(self, pid: int) -> None:
        member = self._members.pop(pid, None)
        if member is not None:
            member.close()


def _tree_pids(root: int) -> set[int]:
    """`root` and its descendants (only root when it is gone: reading it then fails and drops it)."""
    found = {root}
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = _children_from_proc(pid)
        if kids is None:  # no /proc children files: psutil's full scan, once, for the whole tree
            try:
                return found | {c.pid for c in psutil.Process(root).children(recursive=True)}
            except psutil.Error:
                return found
        for kid in kids - found:
            found.add(kid)
            todo.append(kid)
    return found


def _children_from_proc(pid: int) -> set[int] | None:
    """Children of `pid` from `/proc/PID/task/*/children` (Linux >= 3.5 with CONFIG_PROC_CHILDREN); None where
    the kernel does not provide these files."""
    if not _HAS_CHILDREN_FILES:
        return None
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return set()  # gone
    kids: set[int] = set()
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                kids.update(int(k) for k in fh.read().split())
        except (OSError, ValueError):
            continue  # that thread just ended
    return kids


_HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
