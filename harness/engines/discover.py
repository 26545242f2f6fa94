"""Find engines and say what each one is.

An engine is a folder of llama.cpp-family binaries (llama-bench, llama-server, ...). They are found in three
places: the cache (built by `moebench engines build`), paths named in bench.yaml (users' own CUDA/ROCm/Vulkan
builds), and `PATH`. Each gets a dialect ("mainline" or "ik": the same flag means different things in each),
a version or build number and, where known, a commit.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.engines import probe
from harness.engines.build import ENGINE_JSON
from harness.engines.build import BuildOptions, installed_engine_dir, is_complete
from harness.engines.sources import SOURCES
from harness.errors import UserError, unknown_name
from harness.paths import cache_dir

TOOLS = ("llama-bench", "llama-server", "llama-sweep-bench")
RPC_SERVERS = ("ggml-rpc-server", "rpc-server")
_IK_ONLY_FLAGS = ("--run-time-repack", "--fused-moe")  # present in ik_llama.cpp's --help, not mainline's


@dataclass
class Engine:
    name: str
    bin_dir: Path
    dialect: str                      # "mainline" or "ik"
    origin: str                       # "cache", "config" or "PATH"
    version: str | None = None        # source package version or build number, as text
    build_number: int | None = None
    commit: str | None = None
    meta: dict = field(default_factory=dict)

    def has(self, tool: str) -> bool:
        return os.access(self.bin_dir / tool, os.X_OK)

    def tool(self, tool: str) -> Path:
        path = self.bin_dir / tool
        if not os.access(path, os.X_OK):
            raise UserError(f"engine {self.name!r} has no {tool} in {self.bin_dir}")
        return path

    @property
    def tools(self) -> list[str]:
        return [t for t in TOOLS if self.has(t)]

    @property
    def rpc_server(self) -> Path | None:
        for name in RPC_SERVERS:
            if self.has(name):
                return self.bin_dir / name
        return None

    @property
    def main_binary(self) -> Path:
        for tool in ("llama-server", "llama-bench"):
            if self.has(tool):
                return self.bin_dir / tool
        raise UserError(f"engine {self.name!r}: no llama-server or llama-bench in {self.bin_dir}")

    def devices(self, rpc: list[str] | None = None) -> list[probe.Device] | None:
        return probe.list_devices(self.main_binary, rpc)

    def describe(self) -> dict:
        return {
            "name": self.name, "dialect": self.dialect, "origin": self.origin, "bin_dir": str(self.bin_dir),
            "version": self.version, "build_number": self.build_number, "commit": self.commit,
            "tools": self.tools, "rpc_server": self.rpc_server.name if self.rpc_server else None,
        }


def detect_dialect(binary: Path) -> str:
    text = probe.help_text(binary)
    return "ik" if any(flag in text for flag in _IK_ONLY_FLAGS) else "mainline"


def engine_from_folder(bin_dir: Path, *, name: str | None = None, origin: str = "config",
                       dialect: str | None = None) -> Engine:
    """Describe the engine whose binaries are in `bin_dir` (a folder with bin/ inside is accepted too)."""
    bin_dir = Path(bin_dir).expanduser()
    if (bin_dir / "bin").is_dir() and not any((bin_dir / t).exists() for t in TOOLS):
        bin_dir = bin_dir / "bin"
    if not bin_dir.is_dir():
        raise UserError(f"engine folder {bin_dir} does not exist")
    meta_path = bin_dir.parent / ENGINE_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    engine = Engine(name=name or bin_dir.parent.name, bin_dir=bin_dir.resolve(), dialect="mainline",
                    origin=origin, meta=meta)
    if not engine.tools:
        raise UserError(f"no llama-bench or llama-server in {bin_dir}")
    info = probe.version_info(engine.main_binary)
    engine.build_number = info.build_number
    engine.commit = info.commit
    engine.dialect = dialect or meta.get("dialect") or detect_dialect(engine.main_binary)
    engine.version = meta.get("version") or (f"b{info.build_number}" if info.build_number else None)
    return engine


def cached_engines(cache: Path | None = None) -> list[Engine]:
    root = (cache or cache_dir()) / "engines"
    found = []
    for meta_path in sorted(root.glob(f"*/{ENGINE_JSON}")):
        try:
            found.append(engine_from_folder(meta_path.parent / "bin", name=meta_path.parent.name, origin="cache"))
        except UserError:
            continue  # a folder without binaries is an interrupted install: not an engine
    return found


def path_engines() -> list[Engine]:
    found = []
    for tool in ("llama-server", "llama-bench"):
        where = shutil.which(tool)
        if where:
            folder = Path(where).resolve().parent
            if all(e.bin_dir != folder for e in found):
                found.append(engine_from_folder(folder, name=f"PATH:{folder}", origin="PATH"))
    return found


def all_engines(configured: dict[str, Path] | None = None) -> list[Engine]:
    """Every engine found: the cache, the paths named in bench.yaml (`configured`: name -> folder), PATH."""
    engines = cached_engines()
    for name, folder in (configured or {}).items():
        engines.append(engine_from_folder(folder, name=name, origin="config"))
    engines += path_engines()
    return engines


def find_engine_entry(entry: dict) -> Engine:
    """The engine of a bench.yaml-style entry: `{name}`, or `{name, path}` for a build folder."""
    path = entry.get("path")
    return find_engine(entry["name"], {entry["name"]: Path(path)} if path else None)


def find_engine(name: str, configured: dict[str, Path] | None = None) -> Engine:
    """Resolve what a user typed: a configured name, a cached engine id ("mainline-11434.0.0"), a buildable
    engine name ("mainline", "ik": its default portable build in the cache), or a folder path."""
    configured = configured or {}
    if name in configured:
        return engine_from_folder(configured[name], name=name, origin="config")
    if name in SOURCES:

        source = SOURCES[name]
        folder = installed_engine_dir(source, BuildOptions())
        if is_complete(folder, source):
            return engine_from_folder(folder / "bin", name=folder.name, origin="cache")
        raise UserError(f"engine {name!r} is not built yet; run: moebench engines build {name}")
    cached = {e.name: e for e in cached_engines()}
    if name in cached:
        return cached[name]
    if os.sep in name or name.startswith("."):
        return engine_from_folder(Path(name), origin="config")
    raise unknown_name("engine", name, set(configured) | set(cached) | set(SOURCES), "known engines")
