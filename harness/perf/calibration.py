"""Calibrations on disk: the fitted constants of one engine on one device of one host, per tool, with the fit's
residuals and the device peaks, in `<cache>/calibration/<host key>/<engine>/<device key>.json` (the folder can be
moved with `$MOEBENCH_CALIBRATION`).

The host key is a hash of the fingerprint's hardware (CPU model, cores, RAM, GPUs and their PCIe links), not the
host name. The device key names the accelerator without what changes from run to run: the RPC rig is
`rpc-rig` whatever port its server got; a remote RPC server keeps its host:port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.hostinfo import host_fingerprint
from harness.paths import cache_dir
from harness.perf.model import Constants, Peaks

_HARDWARE = ("host_cpu", "host_cpu_cores", "host_cpu_threads", "host_ram_gib", "gpu_name", "gpu_pcie")
_LOOPBACK_RPC = re.compile(r"^RPC\d+\[127\.0\.0\.1:(\d+|RPC_PORT)\]$")


def host_key() -> str:
    fingerprint = host_fingerprint()
    return hashlib.sha256(json.dumps([fingerprint.get(k) for k in _HARDWARE]).encode()).hexdigest()[:12]


def device_key(buffer_type: str) -> str:
    """`rpc-rig` for an RPC server on loopback, else the buffer type with unsafe characters replaced."""
    if _LOOPBACK_RPC.match(buffer_type):
        return "rpc-rig"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", buffer_type)


def calibration_dir() -> Path:
    """`$MOEBENCH_CALIBRATION` (tests point it elsewhere), else `<cache>/calibration/<host key>`."""
    env = os.environ.get("MOEBENCH_CALIBRATION")
    return Path(env).expanduser() if env else cache_dir() / "calibration" / host_key()


def calibration_path(engine: str, device: str) -> Path:
    return calibration_dir() / engine / f"{device}.json"


@dataclass
class ToolCalibration:
    threads: int
    constants: Constants
    residuals: list[dict]
    median_abs_error_pct: dict[str, float]
    results: list[str] = field(default_factory=list)  # the results folders of the sweeps it was fitted on


@dataclass
class Calibration:
    engine: str
    device: str
    peaks: Peaks | None
    tools: dict[str, ToolCalibration]
    host: dict = field(default_factory=dict)
    created_at: str = ""

    def constants_for(self, tool: str, threads: int) -> Constants | None:
        """The tool's constants when it ran with the same thread count (the CPU terms depend on it)."""
        found = self.tools.get(tool)
        return found.constants if found and found.threads == threads else None

    def keeping(self, earlier: "Calibration | None") -> "Calibration":
        """This calibration with the tools that only `earlier` has (calibrating llama-server alone must not drop
        llama-bench's constants; the calibration folder is this host's, so they were measured on this machine),
        """
        kept = {t: found for t, found in (earlier.tools.items() if earlier else []) if t not in self.tools}
        self.tools = {**kept, **self.tools}
        return self

    @property
    def results(self) -> str:
        """Every tool's results folders, for people (each tool reads its own)."""
        return ", ".join(dict.fromkeys(f for found in self.tools.values() for f in found.results))

    def to_dict(self) -> dict:
        return {"engine": self.engine, "device": self.device, "host": self.host, "created_at": self.created_at,
                "results": self.results, "peaks": self.peaks.to_dict() if self.peaks else None,
                "tools": {tool: {"threads": t.threads, "constants": t.constants.to_dict(),
                                 "median_abs_error_pct": t.median_abs_error_pct, "residuals": t.residuals,
                                 "results": t.results}
                          for tool, t in self.tools.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        shared = [f for f in str(data.get("results", "")).split(", ") if f]  # before each tool kept its own
        tools = {tool: ToolCalibration(int(t["threads"]), Constants.from_dict(t["constants"]),
                                       list(t.get("residuals", [])), dict(t.get("median_abs_error_pct", {})),
                                       list(t.get("results") or shared))
                 for tool, t in data["tools"].items()}
        peaks = Peaks.from_dict(data["peaks"]) if data.get("peaks") else None
        return cls(data["engine"], data["device"], peaks, tools, dict(data.get("host", {})),
                   data.get("created_at", ""))

    def save(self) -> Path:
        path = calibration_path(self.engine, self.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.created_at = self.created_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.host = self.host or {k: host_fingerprint().get(k) for k in _HARDWARE}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path


def load_calibration(engine: str, device: str) -> Calibration | None:
    path = calibration_path(engine, device)
    try:
        return Calibration.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return None
