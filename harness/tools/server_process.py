"""A supervised llama-server process, which `harness.tools.llama_server` measures through: start it on a free
loopback port, wait through 503 while it loads, send completions with controlled lengths and read the engine's
own `timings`, stop it cleanly."""

from __future__ import annotations

import json
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import procs
from harness.procs import free_port


class ServerError(RuntimeError):
    """The server died, never became healthy, or answered a request with an error."""


@dataclass
class CompletionTimings:
    prompt_tokens: int
    prompt_tps: float
    gen_tokens: int
    gen_tps: float
    ttft_ms: float | None
    raw: dict
    started_s: float = 0.0          # time.monotonic() when the request was sent
    first_token_s: float = 0.0      # ... when the first token arrived: prompt processing ends here
    finished_s: float = 0.0         # ... when the last chunk arrived: generation ends here


def server_argv(binary: Path, model: Path, port: int | str, args: list[str] | None = None) -> list[str]:
    """llama-server on loopback at `port` (a placeholder in `moebench plan`: the port is chosen at start)."""
    return [str(binary), "-m", str(Path(model).resolve()), "--host", "127.0.0.1", "--port", str(port), *(args or [])]


class LlamaServer:
    """A supervised llama-server process; use as a context manager so it is always stopped."""

    def __init__(self, binary: Path, model: Path, args: list[str] | None = None, *, log_path: Path,
                 port: int | None = None, ready_timeout_s: float = 300.0, cpus: tuple[int, ...] | None = None):
        self.cpus = cpus
        self.port = port or free_port()
        self.argv = server_argv(binary, model, self.port, args)
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = None
        self._log = None

    def __enter__(self) -> "LlamaServer":
        self._log = open(self.log_path, "ab")
        # its working folder is the log's: ik_llama.cpp's server writes llama.log into the current folder
        self._proc = procs.start(self.argv, cwd=self.log_path.parent, stdout=self._log, stderr=self._log,
                                 cpus=self.cpus)
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self) -> None:
        """Poll /health until 200; 503 means still loading. A dead process or the timeout raise ServerError."""
        deadline = time.monotonic() + self.ready_timeout_s
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                    raise ServerError(f"llama-server {how} while loading")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.1)
        raise ServerError(f"llama-server not healthy after {self.ready_timeout_s:.0f} s")

    def complete(self, prompt: str | list[int], n_predict: int, *, seed: int = 42,
                 timeout_s: float = 300.0) -> CompletionTimings:
        """One streamed completion: the engine's own `timings` from its last chunk, and the time to the first
        token as the client sees it. A list of token ids as `prompt` gives exactly that many prompt tokens."""
        body = {"prompt": prompt, "n_predict": n_predict, "cache_prompt": False, "ignore_eos": True,
                "seed": seed, "temperature": 0.0, "stream": True}
        timings: dict = {}
        ttft_ms = None
        started = time.monotonic()
        try:
            with httpx.stream("POST", f"{self.url}/completion", json=body, timeout=timeout_s) as response:
                if response.status_code != 200:
                    raise ServerError(f"/completion answered {response.status_code}: {response.read()[:200]!r}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    chunk = json.loads(line[5:])
                    if ttft_ms is None and chunk.get("content") is not None and not chunk.get("stop"):
                        ttft_ms = (time.monotonic() - started) * 1000
                    timings = chunk.get("timings") or timings
        except (httpx.HTTPError, ValueError) as exc:
            raise ServerError(f"/completion failed: {exc}") from None
        if not timings:
            raise ServerError("/completion sent no timings")
        figures = {}
        for key in ("prompt_n", "prompt_per_second", "predicted_n", "predicted_per_second"):
            try:
                figures[key] = float(timings[key])
            except (KeyError, TypeError, ValueError):
                figures[key] = 0.0
            if not figures[key] > 0:  # a measurement without it is no measurement: never 0 tokens/s marked ok
                raise ServerError(f"/completion timings without a positive {key}: {json.dumps(timings)[:300]}")
        return CompletionTimings(
            prompt_tokens=int(figures["prompt_n"]), prompt_tps=figures["prompt_per_second"],
            gen_tokens=int(figures["predicted_n"]), gen_tps=figures["predicted_per_second"],
            ttft_ms=ttft_ms, raw=timings, started_s=started,
            first_token_s=started + (ttft_ms or 0.0) / 1000, finished_s=time.monotonic())


def prompt_tokens(n: int, vocab_size: int, seed: int = 0) -> list[int]:
    """`n` token ids drawn from the ordinary part of the vocabulary (past the first 300: control and byte
    tokens), fixed for a seed, so that a prompt has exactly n tokens on every engine."""

    rng = random.Random(seed)
    low = min(300, max(vocab_size - 1, 1))
    return [rng.randrange(low, vocab_size) for _ in range(n)]
