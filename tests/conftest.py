"""Shared fixtures: the real engines (built from pinned sources on first use, cached afterwards) and the tiny
synthetic model. Nothing here is faked: tests run the real llama-bench and llama-server.

Two tiers, told apart by the `engine` marker:
  pytest -m "not engine"   the unit tier: no engine is built or started; passes with an empty cache
                           (MOEBENCH_CACHE=/tmp/empty pytest -m "not engine"), goal under 60 s
  pytest                   everything: the engine tests build llama.cpp and ik_llama.cpp on first use
A test is marked `engine` automatically when its fixture closure (its own fixtures and every fixture they
depend on, in any module) holds one of ENGINE_FIXTURES; a test that needs a built engine only through a
child `moebench` process says so by requesting one of them too (or is marked by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from preloaded_cli import FORK_SERVER

REPO = Path(__file__).resolve().parent.parent

ENGINE_FIXTURES = frozenset({"mainline_engine", "ik_engine", "engine", "rig_calibration"})


def pytest_collection_modifyitems(config, items):
    """Mark `engine` every test whose fixture closure reaches an engine fixture (see the module docstring)."""
    for item in items:
        if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session", autouse=True)
def _no_stored_calibration(tmp_path_factory):
    """Tests see no performance-model calibration but the ones they make: the cache's own (from `moebench
    calibrate` on this machine) would add predictions and a report section to every sweep."""
    os.environ["MOEBENCH_CALIBRATION"] = str(tmp_path_factory.mktemp("no-calibration"))


@pytest.fixture(scope="session")
def mainline_engine():
    return _built_engine("mainline")


@pytest.fixture(scope="session")
def ik_engine():
    return _built_engine("ik")


@pytest.fixture(scope="session", params=["mainline", "ik"])
def engine(request):
    return _built_engine(request.param)


def _built_engine(name: str):
    from harness.engines.build import build_engine
    from harness.engines.discover import find_engine

    build_engine(name, report=lambda msg: None)  # instant when cached (make test builds them first)
    return find_engine(name)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from harness.models import synthetic_model

    return synthetic_model("tiny")


def pytest_unconfigure(config):
    FORK_SERVER.close()


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the real `moebench` command line in a child process: forked from the preloaded server
    (tests/preloaded_cli.py), or cold, `python -m harness.cli`, where the server cannot stand for it or
    MOEBENCH_TEST_COLD_CLI=1."""
    argv, full_env = [str(a) for a in args], {**os.environ, **(env or {})}
    if FORK_SERVER.serves(full_env):
        return FORK_SERVER.run(argv, cwd=cwd or REPO, env=full_env, timeout=timeout)
    return run_cold_cli(*argv, cwd=cwd, env=env, timeout=timeout)


def run_cold_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run the real `moebench` command line in a fresh interpreter, as it starts on a user's machine."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def rig_calibration(mainline_engine, tmp_path_factory):
    """mainline's llama-bench calibrated on the RPC rig (quick: five placements, one process each), in its own folder:
    (the environment that points moebench at it, the calibration as `moebench calibrate --json` printed it)."""
    import json

    env = {"MOEBENCH_CALIBRATION": str(tmp_path_factory.mktemp("calibration"))}
    result = run_cli("calibrate", "--rpc-rig", "--tool", "llama-bench", "--processes", "1", "--quick", "--json",
                     env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return env, json.loads(result.stdout)
