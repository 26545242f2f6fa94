"""Supervised child processes: argument lists (never a shell), an own process group, a timeout, and
nothing left running on any exit path.

Every child is started in a new session (its own process group) with `PR_SET_PDEATHSIG=SIGKILL`, so the
kernel kills it if the harness dies, even by SIGKILL. Groups still alive when the harness exits normally, on
an exception or on SIGTERM/SIGINT are killed by `kill_all_children()` (registered with atexit and signal
handlers by `install_exit_handlers()`).
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

_PR_SET_PDEATHSIG = 1
_live_groups: set[int] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


@dataclass
class ProcessResult:
    argv: list[str]
    returncode: int | None
    timed_out: bool
    duration_s: float
    output_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe_failure(self) -> str:
        """A one-line reason: timeout, signal or exit code."""
        if self.timed_out:
            return f"timed out after {self.duration_s:.0f} s"
        if self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = str(-self.returncode)
            return f"killed by signal {name}"
        return f"exit code {self.returncode}"


def _child_setup(cpus: tuple[int, ...] | None) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


def start(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cpus: Iterable[int] | None = None) -> subprocess.Popen:
    """Start a supervised child in its own process group; it dies with the harness. `cpus`: the only CPUs it
    (and every thread it starts) may run on."""
    install_exit_handlers()
    proc = subprocess.Popen(
        [str(a) for a in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        start_new_session=True, preexec_fn=_child_setup(tuple(cpus) if cpus else None),
    )
    with _live_lock:
        _live_groups.add(proc.pid)
    return proc


def stop(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop a child's whole process group: SIGTERM, then SIGKILL after `grace_s`; reaps the child."""
    try:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while other members of its group live on
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with _live_lock:
            _live_groups.discard(proc.pid)


def run(argv: list[str], *, timeout_s: float, log_path: Path | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None,
        tail_lines: int = 40, stdout_path: Path | None = None, cpus: Iterable[int] | None = None) -> ProcessResult:
    """Run a child to completion under a timeout, streaming its output to `log_path` (appended) and to
    `on_line`; always leaves nothing running. With `stdout_path`, stdout goes to that file alone and only
    stderr is logged (for tools that print their results on stdout)."""
    started = time.monotonic()
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    timed_out = False
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") if log_path else None
    out_file = open(stdout_path, "wb") if stdout_path else None
    try:
        proc = start(argv, cwd=cwd, env=env, stdout=out_file or subprocess.PIPE,
                     stderr=subprocess.PIPE if out_file else subprocess.STDOUT, cpus=cpus)
    except OSError:
        if log:
            log.close()
        if out_file:
            out_file.close()
        raise
    stream = proc.stderr if out_file else proc.stdout
    timer = threading.Timer(timeout_s, lambda: _expire(proc))
    timer.daemon = True
    timer.start()
    try:
        assert stream is not None
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            tail.append(line)
            if log:
                log.write(line)
            if on_line:
                on_line(line.rstrip("\n"))
        proc.wait()
        timed_out = getattr(proc, "_moebench_expired", False)
    finally:
        timer.cancel()
        stop(proc)
        stream.close()
        for fh in (log, out_file):
            if fh:
                fh.close()
    return ProcessResult([str(a) for a in argv], proc.returncode, timed_out, time.monotonic() - started,
                         "".join(tail))


def capture(argv: list[str], *, timeout_s: float = 30.0, env: dict[str, str] | None = None) -> ProcessResult:
    """Run a short probe (`--help`, `--version`, `--list-devices`) and return all its output."""
    return run(argv, timeout_s=timeout_s, env=env, tail_lines=100_000)


def _expire(proc: subprocess.Popen) -> None:
    proc._moebench_expired = True  # type: ignore[attr-defined]
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    """A free TCP port on loopback (for a server this harness starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_groups() -> Iterable[int]:
    with _live_lock:
        return list(_live_groups)


def kill_all_children() -> None:
    """Kill every process group this harness started and has not stopped yet."""
    for pgid in live_groups():
        _signal_group(pgid, signal.SIGKILL)
    with _live_lock:
        _live_groups.clear()


def install_exit_handlers() -> None:
    """Make sure children die on normal exit, exceptions, SIGTERM and SIGINT (SIGKILL: PDEATHSIG)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True

    atexit.register(kill_all_children)
    if threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum, frame):  # noqa: ARG001
        kill_all_children()
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)
