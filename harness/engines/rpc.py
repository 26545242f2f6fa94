"""An engine's own ggml RPC server on loopback: a second, real device for placements (and how llama.cpp users
pool machines). Mainline ships `ggml-rpc-server`, ik_llama.cpp `rpc-server`; their protocols differ, so each
engine must talk to its own."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from harness import procs
from harness.engines.discover import Engine
from harness.errors import UserError


class RpcServer:
    """`with RpcServer(engine) as rpc:` gives `rpc.endpoint` ("127.0.0.1:PORT") until the block ends."""

    def __init__(self, engine: Engine, *, port: int | None = None, threads: int | None = None,
                 cpus: tuple[int, ...] | None = None, log_path: Path | None = None, ready_timeout_s: float = 30.0):
        binary = engine.rpc_server
        if binary is None:
            raise UserError(f"engine {engine.name!r} has no RPC server binary in {engine.bin_dir}")
        self.port = port or procs.free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.argv = [str(binary), "-H", "127.0.0.1", "-p", str(self.port)]
        if threads:
            self.argv += ["-t", str(threads)]
        self.cpus = cpus
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self._proc = None
        self._log = None

    def __enter__(self) -> "RpcServer":
        self._log = open(self.log_path, "ab") if self.log_path else None

        out = self._log or subprocess.DEVNULL
        self._proc = procs.start(self.argv, stdout=out, stderr=out, cpus=self.cpus)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                raise UserError(f"RPC server {self.argv[0]} exited with code {self._proc.returncode}"
                                f" (is port {self.port} in use?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise UserError(f"RPC server on {self.endpoint} did not start within {self.ready_timeout_s:.0f} s")

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc)
        if self._log is not None:
            self._log.close()
            self._log = None
