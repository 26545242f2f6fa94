"""Supervised children: timeouts kill the whole group, and nothing outlives the harness, even on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from harness import procs


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_grandchildren(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = f"import subprocess,time; p=subprocess.Popen(['sleep','300']); open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(300)"
    result = procs.run([sys.executable, "-c", script], timeout_s=2)
    assert result.timed_out and not result.ok
    assert result.describe_failure().startswith("timed out")
    assert _wait_gone(int(pidfile.read_text()))


def test_exit_code_and_signal_are_reported():
    assert procs.run([sys.executable, "-c", "raise SystemExit(3)"], timeout_s=30).describe_failure() == "exit code 3"
    crashed = procs.run([sys.executable, "-c", "import os,signal; os.kill(os.getpid(), signal.SIGSEGV)"],
                        timeout_s=30)
    assert crashed.describe_failure() == "killed by signal SIGSEGV"


def test_child_dies_when_harness_is_sigkilled(tmp_path):
    pidfile = tmp_path / "child.pid"
    harness_script = (
        "import sys, time; from harness import procs\n"
        "p = procs.start(['sleep', '300'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n")
    harness = subprocess.Popen([sys.executable, "-c", harness_script])
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert psutil.pid_exists(child)
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    assert _wait_gone(child)


def test_sigterm_of_harness_kills_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    harness_script = (
        "import time; from harness import procs\n"
        "p = procs.start(['sleep', '300'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)\n")
    harness = subprocess.Popen([sys.executable, "-c", harness_script])
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    harness.send_signal(signal.SIGTERM)
    assert harness.wait(timeout=30) == 128 + signal.SIGTERM
    assert _wait_gone(child)
