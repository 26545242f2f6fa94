"""The host as a whole, sampled through /proc (Linux), with psutil where /proc is missing.

Per sample (keys as they appear in a sampler row):

- `ram_available_mib`, `swap_used_mib`: the host's memory (`MemAvailable`, `SwapTotal - SwapFree` of
  /proc/meminfo).
- `host_cpu_busy_pct`: the CPU time all of the host's CPUs spent busy since the previous sample, over the wall
  time between the two reads: 100 = one core busy, the unit of the tree's `cpu_pct` (so the two subtract: see
  `other_cpu_pct_mean` in `harness.telemetry.attribution`). Busy = total - idle - iowait of the aggregate
  `cpu` line of /proc/stat: user, nice, system, irq, softirq and steal (guest time is already inside user and
  nice). Steal counts as busy: a hypervisor that gives the CPU to another guest is contention too. The kernel
  accounts this per tick and reports USER_HZ ticks (10 ms), so one 100 ms sample is good to about +-10 per
  CPU; means over a phase are fine. Without /proc: psutil's `cpu_times()`.
- `swap_io_pages_s`: pages swapped in plus pages swapped out per second since the previous sample (`pswpin` +
  `pswpout` of /proc/vmstat; pages of the kernel's page size, 4 KiB on x86-64). Anything but 0 during a
  measurement means the run was paging. Absent without /proc (psutil's swap counters count file paging too on
  some systems).
- `loopback_mib_s` (only with `loopback=True`): bytes sent over `lo` per second since the previous sample.
  On loopback every byte sent is also received, so only sent bytes count. This is the "bus" of the RPC rig,
  where llama.cpp and its RPC server talk over 127.0.0.1; other loopback traffic (the harness talking to
  llama-server over HTTP) is included.

The rates have no value (the key is left out) on the first sample, which has no baseline, and after a counter
went backwards or could not be read.

Cost: /proc/meminfo, /proc/stat, /proc/vmstat and /proc/net/dev stay open and are re-read with `pread`, one
system call each per sample (about 10 microseconds each on a small host; of /proc/vmstat only the part up to
`pswpout` is read). The kernel writes the whole of /proc/stat for every read, and it grows with the CPUs and
interrupt lines: tens to a few hundred microseconds on a big server.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import psutil

from harness.units import MIB

_FULL = 65536  # bytes: more than any of these files holds
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class HostSource:
    """Host-wide readings; `proc` is the /proc folder and `clock` the time source (both for tests)."""

    def __init__(self, *, loopback: bool = False, proc: str = "/proc",
                 clock: Callable[[], float] = time.monotonic):
        self.loopback = loopback
        self._clock = clock
        self._meminfo = _OpenFile(f"{proc}/meminfo")
        self._stat = _OpenFile(f"{proc}/stat")
        self._vmstat = _OpenFile(f"{proc}/vmstat")
        self._netdev = _OpenFile(f"{proc}/net/dev")
        self._cpu = _Rate()
        self._swap = _Rate()
        self._lo = _Rate()
        self._vmstat_size = _FULL  # bytes of /proc/vmstat to read: up to just past pswpout once it is found

    def sample(self) -> dict[str, float]:
        """One sample; never raises for an unreadable file (its keys are left out)."""
        row = _host_memory(self._meminfo)
        busy = self._cpu.update(_cpu_busy_s(self._stat), self._clock())
        if busy is not None:
            row["host_cpu_busy_pct"] = 100.0 * busy
        swap = self._swap.update(self._swap_pages(), self._clock())
        if swap is not None:
            row["swap_io_pages_s"] = swap
        if self.loopback:
            lo = self._lo.update(_lo_bytes_sent(self._netdev), self._clock())
            if lo is not None:
                row["loopback_mib_s"] = lo / MIB
        return row

    def _swap_pages(self) -> int | None:
        """Pages swapped in plus out since boot (/proc/vmstat), or None. The kernel formats every line it is
        asked for (about 7 microseconds a kilobyte), so only the part up to `pswpout` is read, with room for
        the counters before it to grow; the whole file again when that part no longer holds it."""
        data = self._vmstat.read(self._vmstat_size)
        if not data:
            return None
        try:
            pages = _field(data, b"\npswpin ") + _field(data, b"\npswpout ")
        except ValueError:
            if self._vmstat_size == _FULL:
                return None
            self._vmstat_size = _FULL
            return self._swap_pages()
        self._vmstat_size = min(_FULL, data.index(b"\n", data.index(b"\npswpout ") + 1) + 512)
        return pages

    def close(self) -> None:
        for fh in (self._meminfo, self._stat, self._vmstat, self._netdev):
            fh.close()


class _Rate:
    """The per-second increase of a cumulative counter between successive `update`s."""

    def __init__(self):
        self._last: tuple[float, float] | None = None  # (value, time)

    def update(self, value: float | None, now: float) -> float | None:
        last, self._last = self._last, (None if value is None else (value, now))
        if value is None or last is None or now <= last[1] or value < last[0]:
            return None  # no baseline, no reading, or the counter went backwards
        return (value - last[0]) / (now - last[1])


class _OpenFile:
    """A /proc file kept open and re-read from the start with pread; None where it cannot be read."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def read(self, size: int = _FULL) -> bytes | None:
        if self._fd is None:
            return None
        try:
            return os.pread(self._fd, size, 0)
        except OSError:
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close


def _host_memory(meminfo: _OpenFile) -> dict[str, float]:
    """MemAvailable and swap in use, from /proc/meminfo in one read; psutil where that file is missing."""
    data = meminfo.read(4096)
    if data:
        try:
            available, swap_total, swap_free = (_field(data, key, b"kB") for key in _MEMINFO_KEYS)
            return {"ram_available_mib": available / 1024, "swap_used_mib": (swap_total - swap_free) / 1024}
        except ValueError:
            pass
    try:
        return {"ram_available_mib": psutil.virtual_memory().available / MIB,
                "swap_used_mib": psutil.swap_memory().used / MIB}
    except (OSError, RuntimeError):
        return {}


_MEMINFO_KEYS = (b"\nMemAvailable:", b"\nSwapTotal:", b"\nSwapFree:")


def _field(data: bytes, key: bytes, end: bytes = b"\n") -> int:
    """The number after `key` up to `end` in a /proc file's text; ValueError when it is not there (or cut off
    before `end`)."""
    start = data.index(key) + len(key)
    return int(data[start:data.index(end, start)])


def _cpu_busy_s(stat: _OpenFile) -> float | None:
    """Busy CPU seconds of all CPUs together since boot: /proc/stat's `cpu` line, or psutil without it."""
    if stat.is_open:
        data = stat.read(512)  # the aggregate line comes first
        if not data or not data.startswith(b"cpu "):
            return None
        try:
            # user nice system idle iowait irq softirq steal (then guest, guest_nice: inside user and nice)
            ticks = [int(v) for v in data[:data.index(b"\n")].split()[1:9]]
        except ValueError:
            return None
        return (sum(ticks) - sum(ticks[3:5])) / _TICKS
    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError):
        return None
    not_busy = ("idle", "iowait", "guest", "guest_nice")  # guest time is inside user and nice (Linux)
    return sum(times) - sum(getattr(times, name, 0.0) for name in not_busy)


def _lo_bytes_sent(netdev: _OpenFile) -> int | None:
    data = netdev.read()
    if data:
        for line in data.splitlines()[2:]:
            name, _, rest = line.partition(b":")
            if name.strip() == b"lo":
                return int(rest.split()[8])  # receive: 8 fields, then transmit bytes
    try:
        lo = psutil.net_io_counters(pernic=True).get("lo")
    except OSError:
        return None
    return lo.bytes_sent if lo is not None else None
