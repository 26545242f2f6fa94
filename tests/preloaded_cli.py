"""Run the `moebench` command line for a test without paying its imports every time: a fork server.

A cold `python -m harness.cli ...` spends 1-2 s importing the harness and its heavy dependencies (pandas,
scipy, matplotlib, gguf) before it does anything; the unit tier runs the command line about a hundred times.
So the first call starts one server process (`python tests/preloaded_cli.py`) that imports all of that once
and then waits on a Unix socket; each call sends it the argument list, the working directory, the whole
environment and three file descriptors (stdin, stdout, stderr), and the server forks a child that takes them
over (dup2 onto 0, 1, 2; `os.environ` replaced; chdir; a new process group; fresh random seeds), runs
`harness.cli.main(argv)` as `python -m harness.cli` would (SystemExit, an uncaught exception's traceback and
exit status 1, the atexit handlers) and exits with its status. The test sees what a child process gives:
the exit status, stdout and stderr as text, the files written.

A call whose environment changes how Python itself starts (any `PYTHON*` or `MPL*` variable differing from
the server's, such as a plugin's folder on PYTHONPATH) runs cold, as does every call when
MOEBENCH_TEST_COLD_CLI=1 (the README's test section). The server exits when the test process goes away (its
stdin, a pipe from the tests, reaches end of file)."""

from __future__ import annotations

import atexit
import io
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

COLD_ENV = "MOEBENCH_TEST_COLD_CLI"
STARTUP_VARIABLES = ("PYTHON", "MPL")  # prefixes of variables read only when the interpreter or matplotlib starts
_LENGTH = struct.Struct("!I")
_STATUS = struct.Struct("!ii")  # (pid, 0) when the child started, then (pid, exit status)


# --- the server -------------------------------------------------------------------------------------------

def _preload() -> None:
    """Import what the commands import, so a forked child starts with it in memory. A module that fails to
    import here fails again, the same way, in the child that needs it."""
    import importlib
    import pkgutil

    import harness
    import strategies

    for package in (harness, strategies):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(".__main__"):
                continue  # runs the command line
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - see the docstring
                pass
    import matplotlib.pyplot  # noqa: F401 - the report's plots


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the test closed the connection")
        data += chunk
    return data


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the command line process the request describes, run it, exit."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()
        sys.argv = [request["program"], *request["argv"]]
        from harness.cli import main

        try:
            code = main(request["argv"])
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, status 1
            traceback.print_exc()
            code = 1
        threading._shutdown()  # as the interpreter ends: wait for the threads that are not daemons, then atexit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing left to say
                pass
        os._exit(int(code) & 0xFF)


def _serve_one(conn: socket.socket) -> None:
    header, fds, _flags, _addr = socket.recv_fds(conn, _LENGTH.size, 3)
    (size,) = _LENGTH.unpack(header)
    request = json.loads(_recv_exactly(conn, size))
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(_STATUS.pack(pid, 0))
    _, status = os.waitpid(pid, 0)
    conn.sendall(_STATUS.pack(pid, os.waitstatus_to_exitcode(status)))


def serve(path: str) -> None:
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            return  # the tests are gone
        if listener in readable:
            conn, _ = listener.accept()
            with conn:
                try:
                    _serve_one(conn)
                except (EOFError, OSError):
                    pass


# --- the client -------------------------------------------------------------------------------------------

class ForkServer:
    """The test process's handle on one server, started on first use."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._socket_path = ""
        self._env: dict[str, str] = {}

    def _start(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="moebench-cli-")
        self._socket_path = os.path.join(self._folder.name, "socket")
        self._env = dict(os.environ)
        self._proc = subprocess.Popen([sys.executable, __file__, self._socket_path], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=self._env)
        ready = self._proc.stdout.readline()
        if ready.strip() != "ready":
            self.close()
            raise RuntimeError("the preloaded moebench server did not start")

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a child of this server can stand for a cold process with `env`."""
        if os.environ.get(COLD_ENV) == "1" or env.get(COLD_ENV) == "1":
            return False
        base = self._env if self._proc is not None else os.environ
        names = {n for n in (*env, *base) if n.startswith(STARTUP_VARIABLES)}
        return all(env.get(n) == base.get(n) for n in names)

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        request = json.dumps({"program": "moebench", "argv": argv, "cwd": str(cwd), "env": env}).encode()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                open(os.devnull, "rb") as stdin, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self._socket_path)
            socket.send_fds(conn, [_LENGTH.pack(len(request))], [stdin.fileno(), out.fileno(), err.fileno()])
            conn.sendall(request)
            pid, _ = _STATUS.unpack(_recv_exactly(conn, _STATUS.size))
            conn.settimeout(timeout)
            try:
                _, code = _STATUS.unpack(_recv_exactly(conn, _STATUS.size))
            except socket.timeout:
                os.killpg(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["moebench", *argv], timeout) from None
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(["moebench", *argv], code, _text(out.read()), _text(err.read()))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()  # the server's end of file
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


FORK_SERVER = ForkServer()  # one per test process, however conftest is imported (`conftest`, `tests.conftest`)


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes: the locale's encoding, universal newlines."""
    return io.TextIOWrapper(io.BytesIO(data)).read()


if __name__ == "__main__":
    serve(sys.argv[1])
