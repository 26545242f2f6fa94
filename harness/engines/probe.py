"""Ask an engine binary what it is: `--help` and `--version` text (cached by the binary's hash, since they
cannot change without the binary changing) and `--list-devices` (never cached: devices depend on the machine
and on the RPC servers named)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.paths import cache_dir
from harness.units import MIB

PROBE_TIMEOUT_S = 60.0


# (path, inode, size, mtime in ns) -> sha256: a binary is hashed once per process, not once per probe (each
# planned configuration asks its engine's --help and a few flags; llama-server is tens of MiB)
_hashes: dict[tuple[str, int, int, int], str] = {}


def binary_hash(binary: Path) -> str:
    """The sha256 of the binary's bytes, read again only when its path, inode, size or mtime changed."""
    stat = os.stat(binary)
    key = (os.path.abspath(binary), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = _file_hash(binary)
    return _hashes[key]


def _file_hash(binary: Path) -> str:
    digest = hashlib.sha256()
    with open(binary, "rb") as fh:
        for chunk in iter(lambda: fh.read(MIB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_output(binary: Path, args: list[str]) -> str:
    """The merged output of `binary args...`, cached under the cache's probes/ by binary hash and args."""
    key = hashlib.sha256((binary_hash(binary) + "\0" + "\0".join(args)).encode()).hexdigest()[:32]
    path = cache_dir() / "probes" / f"{key}.txt"
    if path.exists():
        return path.read_text()
    result = procs.capture([str(binary), *args], timeout_s=PROBE_TIMEOUT_S)
    text = result.output_tail
    if not result.timed_out:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return text


def help_text(binary: Path) -> str:
    return cached_output(binary, ["--help"])


def accepts(binary: Path, flag: str, value: str | None = None) -> bool:
    """Whether the binary parses `flag` even though its --help may not list it (ik_llama.cpp's server help
    omits -ot): `binary FLAG [VALUE] --version` prints the version only when FLAG is understood."""
    args = [flag] + ([value] if value is not None else []) + ["--version"]
    text = cached_output(binary, args)
    return "version:" in text and "invalid argument" not in text and "error:" not in text


@dataclass(frozen=True)
class VersionInfo:
    build_number: int | None
    commit: str | None
    compiler: str | None


# "version: 0.6.0-dev (build 11434, commit unknown)" (mainline) or "version: 3851 (a1b2c3d)" (older, ik)
_VERSION_NEW_RE = re.compile(r"version:\s*\S+\s*\(build\s+(\d+),\s*commit\s+([^)]*)\)")
_VERSION_RE = re.compile(r"version:\s*(\d+)\s*\(([^)]*)\)")
_BUILT_WITH_RE = re.compile(r"built with (.+)")


def version_info(binary: Path) -> VersionInfo:
    text = cached_output(binary, ["--version"])
    m = _VERSION_NEW_RE.search(text) or _VERSION_RE.search(text)
    built = _BUILT_WITH_RE.search(text)
    compiler = built.group(1).strip() if built else None
    if not m:
        return VersionInfo(None, None, compiler)
    commit = m.group(2).strip() or None
    return VersionInfo(int(m.group(1)), None if commit == "unknown" else commit, compiler)


@dataclass(frozen=True)
class Device:
    name: str              # as the engine names it in -dev / -ot: CPU, CUDA0, Vulkan1, RPC0[127.0.0.1:50052]
    description: str
    total_mib: int | None
    free_mib: int | None

    @property
    def is_accelerator(self) -> bool:
        return self.name != "CPU"


_DEVICE_RE = re.compile(r"^\s{2}(\S+):\s*(.*?)(?:\s*\((\d+)\s*MiB,\s*(\d+)\s*MiB free\))?\s*$")


def parse_device_list(text: str) -> list[Device]:
    """Parse `--list-devices` output ("Available devices:" then "  NAME: description (T MiB, F MiB free)")."""
    devices: list[Device] = []
    in_list = False
    for line in text.splitlines():
        if line.strip().startswith("Available devices"):
            in_list = True
            continue
        if in_list:
            m = _DEVICE_RE.match(line)
            if not m:
                continue
            total = int(m.group(3)) if m.group(3) else None
            free = int(m.group(4)) if m.group(4) else None
            devices.append(Device(m.group(1), m.group(2), total, free))
    return devices


def list_devices(binary: Path, rpc: list[str] | None = None) -> list[Device] | None:
    """Devices the engine reports, or None when the binary has no `--list-devices` (ik_llama.cpp).
    `rpc` names RPC servers (host:port) so that their devices are listed too."""
    if "--list-devices" not in help_text(binary):
        return None
    args = ["--rpc", ",".join(rpc)] if rpc else []
    args.append("--list-devices")  # after --rpc: it lists and exits as soon as it is parsed
    result = procs.capture([str(binary), *args], timeout_s=PROBE_TIMEOUT_S)
    return parse_device_list(result.output_tail)
