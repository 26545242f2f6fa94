"""The engines, built for real from the pinned sources and found again by name, by path and on PATH."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import run_cli
from harness.engines.build import BuildOptions, build_engine, engine_id, is_complete
from harness.engines.discover import engine_from_folder, find_engine
from harness.engines.sources import SOURCES
from harness.errors import UserError
from harness.paths import cache_dir


def test_both_engines_have_their_targets_and_identity(mainline_engine, ik_engine):
    assert mainline_engine.dialect == "mainline"
    assert ik_engine.dialect == "ik"
    assert set(mainline_engine.tools) >= {"llama-bench", "llama-server"}
    assert set(ik_engine.tools) >= {"llama-bench", "llama-server", "llama-sweep-bench"}
    assert mainline_engine.rpc_server.name == "ggml-rpc-server"
    assert ik_engine.rpc_server.name == "rpc-server"
    # the builds report who they are: mainline its release build number, ik its source package version
    assert mainline_engine.build_number == 11434
    assert ik_engine.commit == "ik-llama-cpp-python==0.1.5"


def test_dialect_is_detected_from_help_without_engine_json(tmp_path, mainline_engine, ik_engine):
    for engine, expected in ((mainline_engine, "mainline"), (ik_engine, "ik")):
        bare = tmp_path / expected / "bin"
        shutil.copytree(engine.bin_dir, bare)
        found = engine_from_folder(bare, name=f"bare-{expected}")
        assert found.meta == {}  # no engine.json beside it: dialect had to come from --help
        assert found.dialect == expected


def test_second_build_is_a_cache_hit(mainline_engine):
    source = SOURCES["mainline"]
    log = cache_dir() / "build" / f"{engine_id(source, BuildOptions())}.log"
    before = log.stat().st_mtime_ns if log.exists() else None
    messages = []
    folder = build_engine("mainline", report=messages.append)
    assert is_complete(folder, source)
    assert any("cached" in m for m in messages), messages
    assert (log.stat().st_mtime_ns if log.exists() else None) == before  # no step ran, nothing logged


def test_cli_build_cached_prints_bin_folder(mainline_engine):
    result = run_cli("engines", "build", "mainline")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(mainline_engine.bin_dir)


def test_engines_list_reports_dialect_version_and_devices(mainline_engine, ik_engine, tmp_path):
    result = run_cli("engines", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    main = rows[mainline_engine.name]
    ik = rows[ik_engine.name]
    assert (main["dialect"], main["version"], main["build_number"]) == ("mainline", "11434.0.0", 11434)
    assert (ik["dialect"], ik["version"]) == ("ik", "0.1.5")
    assert main["devices"] == []        # a CPU build lists no accelerator
    assert ik["devices"] is None        # ik_llama.cpp has no --list-devices


def test_engines_path_and_unknown_name(mainline_engine):
    ok = run_cli("engines", "path", "mainline")
    assert ok.returncode == 0 and ok.stdout.strip() == str(mainline_engine.bin_dir)
    bad = run_cli("engines", "path", "mainlin")
    assert bad.returncode == 2
    assert "did you mean 'mainline'" in bad.stderr and "Traceback" not in bad.stderr


def test_moved_engine_folder_named_in_bench_yaml_works(mainline_engine, tiny_model, tmp_path):
    """Binaries are self-contained: a copied engine folder named by path runs like the original."""
    moved = tmp_path / "my-build"
    shutil.copytree(mainline_engine.bin_dir.parent, moved)
    config = tmp_path / "bench.yaml"
    config.write_text(f"models:\n  - path: {tiny_model}\nengines:\n  - name: my-build\n    path: {moved}/bin\n"
                      "bench:\n  prompt_tokens: [32]\n  gen_tokens: [4]\n  repetitions: 1\n  processes: 1\n")
    listed = run_cli("engines", "list", "--json", "--config", config)
    assert listed.returncode == 0, listed.stderr
    mine = [r for r in json.loads(listed.stdout) if r["name"] == "my-build"]
    assert mine and mine[0]["origin"] == "config" and mine[0]["dialect"] == "mainline"
    run = run_cli("run", config, "--out", tmp_path / "results")
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "results" / "default" / "runs.csv").read_text()
    assert "my-build" in text and ",ok," in text


def test_failed_build_names_step_and_log(mainline_engine):
    """A build that cannot configure says which step failed and where the log is (sources stay cached)."""
    result = run_cli("engines", "build", "mainline", "--cmake-arg=-DCMAKE_CXX_COMPILER=/nonexistent/c++")
    assert result.returncode == 1
    assert "failed at step 'configure'" in result.stderr
    log = result.stderr.rsplit("log: ", 1)[1].split()[0]
    assert os.path.exists(log) and "nonexistent" in open(log).read()
    assert "Traceback" not in result.stderr


def test_unknown_engine_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        find_engine(str(tmp_path / "nowhere"))


def test_rpc_server_is_a_second_device(mainline_engine):
    """The loopback RPC rig: the engine's own rpc server shows up as device RPC0 in --list-devices."""
    from harness.engines.rpc import RpcServer

    with RpcServer(mainline_engine) as rpc:
        devices = mainline_engine.devices(rpc=[rpc.endpoint])
    assert [d.name for d in devices] == ["RPC0"]
    assert devices[0].description == rpc.endpoint and devices[0].total_mib > 0


def test_a_second_build_waits_for_the_first_and_finds_it_cached(tmp_path):
    """Two callers building the same engine (a test session beside `make demo`): the second waits on the lock
    and then uses the first one's build instead of running a second build in the same build tree."""
    import fcntl
    import threading

    from harness.engines.build import ENGINE_JSON, build_engine
    from harness.engines.sources import get_source

    source = get_source("mainline")
    (tmp_path / "build").mkdir()
    engine_dir = tmp_path / "engines" / f"mainline-{source.version}"
    messages, result = [], {}
    with open(tmp_path / "build" / f"mainline-{source.version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # "the first build" holds it
        waiter = threading.Thread(target=lambda: result.setdefault(
            "dir", build_engine("mainline", cache=tmp_path, report=messages.append)))
        waiter.start()
        deadline = time.monotonic() + 10
        while not any("waiting" in m for m in messages):
            assert time.monotonic() < deadline and waiter.is_alive()
            time.sleep(0.02)
        (engine_dir / "bin").mkdir(parents=True)  # the first build finishes
        for target in source.targets:
            binary = engine_dir / "bin" / target
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
        (engine_dir / ENGINE_JSON).write_text("{}")
    waiter.join(10)
    assert result["dir"] == engine_dir and any("cached" in m for m in messages[1:])
    assert not (tmp_path / "downloads").exists()  # it built nothing itself


def test_a_binary_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    from harness.engines import probe

    binary = tmp_path / "llama-bench"
    binary.write_bytes(b"one")
    reads = []
    monkeypatch.setattr(probe, "_file_hash", lambda path, real=probe._file_hash: reads.append(path) or real(path))
    first = probe.binary_hash(binary)
    assert probe.binary_hash(binary) == first and len(reads) == 1  # the second ask reads nothing
    binary.write_bytes(b"other bytes")  # another size (and mtime): read again
    assert probe.binary_hash(binary) != first and len(reads) == 2
