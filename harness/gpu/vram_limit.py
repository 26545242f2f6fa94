"""Emulate a smaller card: `vram_limit_gib` reserves the rest of a GPU's memory for the duration of each run,
so that a 24 GB card's behaviour can be measured on a larger GPU. The reservation lives in a supervised child
process (`harness.gpu.reserve`); it is released when the run ends, on every exit path, and the kernel releases
it if the harness dies."""

from __future__ import annotations

import subprocess
import sys
import time

from harness import procs
from harness.errors import UserError
from harness.units import GIB


class VramReservation:
    """`with VramReservation(device=0, limit_gib=24):` leaves about `limit_gib` free on that GPU."""

    def __init__(self, device: int, limit_gib: float, timeout_s: float = 60.0):
        self.device = device
        self.limit_bytes = int(limit_gib * GIB)
        self.timeout_s = timeout_s
        self.reserved_bytes = 0
        self.free_bytes = None
        self._proc = None

    def __enter__(self) -> "VramReservation":
        self._proc = procs.start([sys.executable, "-m", "harness.gpu.reserve", str(self.device),
                                  str(self.limit_bytes)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout_s
        line = ""
        while time.monotonic() < deadline:
            raw = self._proc.stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            if line.startswith(("reserved", "error")):
                break
        if not line.startswith("reserved"):
            self.stop()
            reason = line.removeprefix("error: ") or "no answer from the reserving process"
            raise UserError(f"vram_limit_gib needs an NVIDIA GPU with its driver on this machine: {reason}")
        fields = line.split()
        self.reserved_bytes, self.free_bytes = int(fields[1]), int(fields[3])
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc, grace_s=1.0)
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None
