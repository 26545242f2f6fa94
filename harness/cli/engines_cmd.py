"""`moebench engines build|list|path`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.engines.build import BuildOptions, build_engine, parse_cmake_arg
from harness.engines.discover import all_engines, find_engine
from harness.engines.sources import SOURCES


def register(sub: argparse._SubParsersAction) -> None:
    engines = sub.add_parser("engines", help="build, list and locate llama.cpp / ik_llama.cpp engines")
    esub = engines.add_subparsers(dest="engines_command", metavar="ACTION", required=True)

    build = esub.add_parser("build", help="build an engine from its pinned source into the cache")
    build.add_argument("engine", choices=sorted(SOURCES), help="mainline (llama.cpp) or ik (ik_llama.cpp)")
    build.add_argument("--native", action="store_true", help="-DGGML_NATIVE=ON instead of portable AVX2 flags")
    build.add_argument("--cuda", action="store_true", help="build the CUDA backend")
    build.add_argument("--cuda-arch", help="CUDA architectures to build, e.g. 90 (implies --cuda)")
    build.add_argument("--cmake-arg", action="append", default=[], type=parse_cmake_arg, metavar="-DNAME=VALUE",
                       help="extra CMake definition, written --cmake-arg=-DNAME=VALUE (repeatable)")
    build.add_argument("--jobs", "-j", type=int, help="parallel compile jobs (default: all cores)")
    build.set_defaults(func=cmd_build)

    listing = esub.add_parser("list", help="every engine found: cache, bench.yaml, PATH")
    listing.add_argument("--config", type=Path, help="bench.yaml whose engine paths to include")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list)

    path = esub.add_parser("path", help="print the folder holding an engine's binaries")
    path.add_argument("name", help="mainline, ik, a cached engine id, or a name from bench.yaml")
    path.add_argument("--config", type=Path, help="bench.yaml whose engine names to include")
    path.set_defaults(func=cmd_path)


def cmd_build(args: argparse.Namespace) -> int:
    options = BuildOptions(native=args.native, cuda=args.cuda or bool(args.cuda_arch), cuda_arch=args.cuda_arch,
                           cmake_args=tuple(args.cmake_arg), jobs=args.jobs)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"compiling {args.engine}", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        folder = build_engine(args.engine, options, report=lambda msg: console.print(msg), on_progress=on_progress)
    print(folder / "bin")
    return 0


def _configured_engines(config: Path | None) -> dict[str, Path]:
    if config is None:
        default = Path("bench.yaml")
        if not default.exists():
            return {}
        config = default
    from harness.config import load_config

    return load_config(config).engine_paths()


def cmd_list(args: argparse.Namespace) -> int:
    engines = all_engines(_configured_engines(args.config))
    rows = []
    for engine in engines:
        devices = engine.devices()
        row = engine.describe()
        row["devices"] = None if devices is None else [
            {"name": d.name, "description": d.description, "total_mib": d.total_mib, "free_mib": d.free_mib}
            for d in devices]
        rows.append(row)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print("no engines found; build one with: moebench engines build mainline")
        return 0
    table = Table("name", "dialect", "version", "build", "commit", "origin", "devices", "folder")
    for row in rows:
        if row["devices"] is None:
            devices = "CPU (+ accelerators compiled in; this engine has no --list-devices)"
        else:
            devices = ", ".join(d["name"] for d in row["devices"]) or "CPU"
            devices = devices if "CPU" in devices else "CPU, " + devices
        table.add_row(row["name"], row["dialect"], str(row["version"] or "?"), str(row["build_number"] or "?"),
                      row["commit"] or "?", row["origin"], devices, row["bin_dir"])
    Console(width=200).print(table)
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    print(find_engine(args.name, _configured_engines(args.config)).bin_dir)
    return 0
