"""Build an engine from its pinned source into the cache: download, unpack, prepare, configure, build, install.

Layout under the cache (`$MOEBENCH_CACHE`, default ~/.cache/moebench):
    downloads/<archive>.tar.gz     the pinned source archives
    src/<archive>/                 unpacked once
    build/<engine-id>/             the CMake build tree (kept, so a rebuild is incremental)
    build/<engine-id>.log          the build log, kept after success and failure
    engines/<engine-id>/bin/       the installed, self-contained binaries (static ggml/llama)
    engines/<engine-id>/engine.json   what this engine is: dialect, version, cmake arguments
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import procs
from harness.engines.sources import EngineSource, download, get_source, unpack
from harness.errors import BuildError, UserError
from harness.paths import cache_dir

PORTABLE_CPU_FLAGS = ("-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON")
ENGINE_JSON = "engine.json"
BUILD_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class BuildOptions:
    native: bool = False                       # -DGGML_NATIVE=ON (dies in AMX code on many virtual machines)
    cuda: bool = False                         # -DGGML_CUDA=ON
    cuda_arch: str | None = None               # e.g. "90" for Hopper; fewer architectures build faster
    cmake_args: tuple[str, ...] = field(default_factory=tuple)
    jobs: int | None = None

    @property
    def variant(self) -> str:
        """The suffix naming this build next to others of the same version ("" for the portable CPU build)."""
        parts = []
        if self.cuda:
            parts.append("cuda" + (self.cuda_arch or ""))
        if self.native:
            parts.append("native")
        if self.cmake_args:
            parts.append(hashlib.sha256("\0".join(self.cmake_args).encode()).hexdigest()[:8])
        return "-".join(parts)


def engine_id(source: EngineSource, options: BuildOptions) -> str:
    base = f"{source.engine}-{source.version}"
    return f"{base}-{options.variant}" if options.variant else base


def cmake_configure_args(source: EngineSource, project: Path, build_dir: Path, options: BuildOptions,
                         generator: str | None) -> list[str]:
    args = ["cmake", "-S", str(project), "-B", str(build_dir)]
    if generator:
        args += ["-G", generator]
    args += ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF"]
    args += ["-DGGML_NATIVE=ON"] if options.native else list(PORTABLE_CPU_FLAGS)
    args += ["-DGGML_RPC=ON"]
    args += list(source.cmake_defines)
    if options.cuda:
        args += ["-DGGML_CUDA=ON"]
        if options.cuda_arch:
            args += [f"-DCMAKE_CUDA_ARCHITECTURES={options.cuda_arch}"]
    args += list(options.cmake_args)
    return args


def installed_engine_dir(source: EngineSource, options: BuildOptions, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "engines" / engine_id(source, options)


def is_complete(engine_dir: Path, source: EngineSource) -> bool:
    """An installed engine is complete when engine.json and every target binary are there."""
    meta_path = engine_dir / ENGINE_JSON
    if not meta_path.exists():
        return False
    try:
        json.loads(meta_path.read_text())  # a torn engine.json is an unfinished install
    except (OSError, ValueError):
        return False
    return all(os.access(engine_dir / "bin" / t, os.X_OK) for t in source.targets)


def build_engine(engine: str, options: BuildOptions = BuildOptions(), *, report: Callable[[str], None],
                 cache: Path | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Build `engine` ("mainline" or "ik") unless a complete build is cached; return its folder. Builds of the
    same engine id are serialized by a lock file: a second caller (another test session, `make demo` beside
    `make test`) waits for the first and then finds the build cached, instead of running a second build in the
    same build tree."""
    source = get_source(engine)
    cache = cache or cache_dir()
    eid = engine_id(source, options)
    engine_dir = cache / "engines" / eid
    if is_complete(engine_dir, source):
        report(f"{eid}: cached at {engine_dir}")
        return engine_dir
    (cache / "build").mkdir(parents=True, exist_ok=True)
    with open(cache / "build" / f"{eid}.lock", "w") as lock:
        if not _try_lock(lock):
            report(f"{eid}: another build of it is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(engine_dir, source):
            report(f"{eid}: cached at {engine_dir}")
            return engine_dir
        return _build(source, options, eid, engine_dir, cache, report, on_progress)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _build(source, options: BuildOptions, eid: str, engine_dir: Path, cache: Path,
           report: Callable[[str], None], on_progress: Callable[[int, int], None] | None) -> Path:
    build_dir = cache / "build" / eid
    log_path = cache / "build" / f"{eid}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n==== moebench build of {eid} at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")

    def step(name: str, argv: list[str] | None = None, **kw) -> procs.ProcessResult | None:
        report(f"{eid}: {name}")
        with open(log_path, "a") as log:
            log.write(f"\n---- step: {name} ----\n")
            if argv:
                log.write("$ " + " ".join(argv) + "\n")
        if argv is None:
            return None
        result = procs.run(argv, timeout_s=BUILD_TIMEOUT_S, log_path=log_path, **kw)
        if not result.ok:
            raise BuildError(f"building {eid} failed at step '{name}' ({result.describe_failure()}); "
                             f"log: {log_path}")
        return result

    step("download " + source.requirement)
    archive = download(source, cache / "downloads", log_path)
    step("unpack")
    project = unpack(source, archive, cache / "src")
    step("prepare")
    prepare_project(source, project)

    generator = "Ninja" if shutil.which("ninja") else None
    configure = cmake_configure_args(source, project, build_dir, options, generator)
    configure_hash = hashlib.sha256("\0".join(configure[5:]).encode()).hexdigest()[:16]
    step("configure", configure)
    jobs = str(options.jobs or os.cpu_count() or 2)
    build_argv = ["cmake", "--build", str(build_dir), "--target", *source.targets, "-j", jobs]

    def on_line(line: str) -> None:
        m = re.match(r"^\[\s*(\d+)\s*/\s*(\d+)\]", line) or re.match(r"^\[\s*(\d+)%\]", line)
        if m and on_progress:
            done, total = (int(m.group(1)), int(m.group(2))) if m.lastindex == 2 else (int(m.group(1)), 100)
            on_progress(done, total)

    step(f"build {' '.join(source.targets)} (-j {jobs})", build_argv, on_line=on_line)
    step("install")
    install(source, options, build_dir, engine_dir, log_path, configure, configure_hash)
    report(f"{eid}: built into {engine_dir}")
    return engine_dir


def prepare_project(source: EngineSource, project: Path) -> None:
    """Fix what the archive lacks. ik's archive has no common/cmake/build-info-gen-cpp.cmake, the script its
    build runs to write common/build-info.cpp from git. We supply a script that writes that file with the
    engine's real identity instead: the source package and version, since there is no git commit to read."""
    template = project / "common" / "build-info.cpp.in"
    script = project / "common" / "cmake" / "build-info-gen-cpp.cmake"
    if script.exists() or not template.exists():
        return
    commit = source.identity.replace('"', "")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "# written by moebench: the source archive has no git history to read the build identity from\n"
        f"set(BUILD_NUMBER {source.build_number})\n"
        f'set(BUILD_COMMIT "{commit}")\n'
        'set(BUILD_COMPILER "${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}")\n'
        f'set(BUILD_TARGET "{os.uname().machine}")\n'
        'configure_file("${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp.in"\n'
        '               "${CMAKE_CURRENT_LIST_DIR}/../build-info.cpp" @ONLY)\n')


def install(source: EngineSource, options: BuildOptions, build_dir: Path, engine_dir: Path, log_path: Path,
            configure: list[str], configure_hash: str) -> None:
    """Copy the target binaries and a description into the engine folder, atomically."""
    bin_src = build_dir / "bin"
    missing = [t for t in source.targets if not (bin_src / t).exists()]
    if missing:
        raise BuildError(f"build finished but {', '.join(missing)} missing in {bin_src}; log: {log_path}")
    staging = engine_dir.with_name(engine_dir.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for target in source.targets:
        shutil.copy2(bin_src / target, staging / "bin" / target)
    meta = {
        "engine": source.engine,
        "dialect": source.dialect,
        "source": source.requirement,
        "version": source.version,
        "build_number": source.build_number,
        "commit": None,
        "variant": options.variant or "cpu",
        "cuda": options.cuda,
        "configure_args": configure[5:],
        "configure_hash": configure_hash,
        "rpc_server": source.rpc_server,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (staging / ENGINE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy2(log_path, staging / "build.log")
    if engine_dir.exists():
        shutil.rmtree(engine_dir)
    staging.replace(engine_dir)


def parse_cmake_arg(value: str) -> str:
    if not value.startswith("-D"):
        raise UserError(f"--cmake-arg must look like -DNAME=VALUE, got {value!r}")
    return value
