"""A background thread that samples the GPUs (NVML), the engine's process tree and the host at a fixed rate
into an in-memory time series, and the phase windows the runner marks on that series.

    with Sampler(proc.pid, hz=10) as s:
        t0 = s.now(); ...run a repetition...; s.mark_phase("tg128", t0, s.now(), tokens=128)
    s.summarize("tg128")             # dict with TELEMETRY_COLUMNS
    s.write_csv_gz(folder / "telemetry.csv.gz")

Each row has `t_s` (seconds since the sampler was made, `time.monotonic()`), then the metrics present in that
sample: `gpu{i}_*` per GPU (see `harness.telemetry.nvml`), the process tree (see `harness.telemetry.process`)
and the host: memory, CPU busy time, swap traffic (see `harness.telemetry.host`). The first sample is taken
when sampling starts, one more when it stops.

Sampling never blocks or breaks the run: every sample is wrapped (an error is one warning, then the sample is
skipped); a sample slower than the period delays the next one instead of queueing catch-up samples; the
thread is a daemon. NVML PCIe throughput calls wait about 20 ms each (two per GPU), so with many GPUs the real
rate is lower than `hz`; `t_s` is always the true time.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from harness.telemetry.attribution import summarize_phase
from harness.telemetry.nvml import NvmlSource, open_nvml
from harness.telemetry.process import ProcessTreeSource

log = logging.getLogger(__name__)

RootPid = int | Iterable[int] | None
"""A pid, several (an engine and its RPC server), or None (not started yet)."""


class Sampler:
    """Samples at `hz` in a daemon thread between `start()` and `stop()` (or a `with` block).

    `root_pid`: the engine's pid, or a callable returning it (or several pids, or None) that is asked on every
    sample: use it when the process is started, or restarted, after the sampler.
    `loopback`: also sample loopback traffic (`loopback_mib_s`): the RPC rig's bus.
    `nvml`: None or True: open NVML now if there is one (closed at `stop()`); False: no GPU sampling; an
    `NvmlSource` from `open_nvml()`: use it and leave it open (share one across many runs: nvmlInit can take
    seconds on a GPU without persistence mode).
    """

    def __init__(self, root_pid: int | Callable[[], RootPid], hz: float = 10.0, *, loopback: bool = False,
                 nvml: NvmlSource | bool | None = None, uss_every: int = 10):
        if hz <= 0:
            raise ValueError("hz must be > 0")
        self.hz = float(hz)
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._t0 = time.monotonic()
        self._rows: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._phases: dict[str, tuple[list[tuple[float, float]], float]] = {}
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_s = 0.0
        self._stopped = False
        self._get_roots = _roots_getter(root_pid)
        self._process = ProcessTreeSource(self._roots_or_none, loopback=loopback, uss_every=uss_every)
        self._owns_nvml = nvml is None or nvml is True
        if self._owns_nvml:
            self._nvml = open_nvml(warn=self._keep)
        else:
            self._nvml = nvml or None

    # -- life cycle --------------------------------------------------------------------------------------------

    def start(self) -> "Sampler":
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="moebench-telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling (takes one last sample) and release NVML if this sampler opened it; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._warn(f"telemetry thread did not stop within {timeout_s:.0f} s; left running as a daemon")
        if self._thread is None or not self._thread.is_alive():
            self._process.close()
            if self._owns_nvml and self._nvml is not None:
                self._nvml.close()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the runner uses ----------------------------------------------------------------------------------

    def now(self) -> float:
        """The sampler's clock: seconds since it was made (the `t_s` of its rows)."""
        return time.monotonic() - self._t0

    def mark_phase(self, name: str, start_s: float, end_s: float, tokens: float | None) -> None:
        """Record that phase `name` ran from `start_s` to `end_s` (sampler time) and handled `tokens` tokens.
        Call once per window (one per repetition, say); windows and tokens add up."""
        if end_s < start_s:
            start_s, end_s = end_s, start_s
        with self._lock:
            windows, total = self._phases.get(name, ([], 0.0))
            windows.append((float(start_s), float(end_s)))
            self._phases[name] = (windows, total + float(tokens or 0))

    @property
    def phases(self) -> dict[str, tuple[list[tuple[float, float]], float]]:
        """name -> (windows, total tokens)."""
        with self._lock:
            return {k: (list(w), t) for k, (w, t) in self._phases.items()}

    def summarize(self, name: str) -> dict[str, float | int | str | None]:
        """The TELEMETRY_COLUMNS of phase `name` (every value None for a phase never marked)."""
        windows, tokens = self.phases.get(name, ([], 0.0))
        return summarize_phase(self.samples, windows, tokens)

    def summaries(self) -> dict[str, dict[str, float | int | str | None]]:
        return {name: self.summarize(name) for name in self.phases}

    @property
    def samples(self) -> list[dict[str, float]]:
        """A copy of the rows so far."""
        with self._lock:
            return list(self._rows)

    @property
    def gpu_count(self) -> int:
        return self._nvml.gpu_count if self._nvml is not None else 0

    @property
    def cpu_seconds(self) -> float:
        """CPU time the sampling thread has used (its own `time.thread_time()`)."""
        return self._cpu_s

    def write_csv_gz(self, path: str | os.PathLike[str]) -> Path:
        """Write every row as gzip CSV (header: `t_s`, then every key in first-seen order; a missing value is
        an empty cell), atomically: a temporary file in the same folder, renamed at the end."""
        path = Path(path)
        rows = self.samples
        header: dict[str, None] = {"t_s": None}
        for row in rows:
            header.update(dict.fromkeys(row))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with gzip.open(tmp, "wt", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(header), restval="")
                writer.writeheader()
                writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    # -- the thread --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - the run goes on without telemetry
            self._warn(f"telemetry thread ended early ({type(exc).__name__}: {exc})", once_key="thread")

    def _loop(self) -> None:
        period = 1.0 / self.hz
        next_at = time.monotonic()
        while True:
            self._sample_once()
            self._cpu_s = time.thread_time()
            if self._stop_event.is_set():
                break
            next_at += period
            now = time.monotonic()
            if next_at < now:
                next_at = now  # late: start again from now, never catch up with a burst
            if self._stop_event.wait(next_at - now):
                self._sample_once()  # the last sample, at stop
                self._cpu_s = time.thread_time()
                break

    def _sample_once(self) -> None:
        t_s = self.now()
        row: dict[str, float] = {"t_s": t_s}
        for name, source in (("process", self._process), ("nvml", self._nvml)):  # the fast one nearest t_s
            if source is None:
                continue
            try:
                row.update(source.sample(self._keep) if name == "nvml" else source.sample())
            except Exception as exc:  # noqa: BLE001 - a sample is never worth a crash
                self._warn(f"telemetry: {name} sample failed ({type(exc).__name__}: {exc})", once_key=name)
        with self._lock:
            self._rows.append(row)

    def _roots_or_none(self) -> list[int]:
        try:
            return self._get_roots()
        except Exception as exc:  # noqa: BLE001
            self._warn(f"telemetry: root pid callback failed ({type(exc).__name__}: {exc})", once_key="root")
            return []

    def _warn(self, message: str, once_key: str | None = None) -> None:
        """Log a warning and keep it for the results row (once per `once_key`, when given)."""
        if once_key is not None:
            if once_key in self._warned:
                return
            self._warned.add(once_key)
        log.warning("%s", message)
        self._keep(message)

    def _keep(self, message: str) -> None:
        """Keep an already logged warning (NVML logs its own)."""
        with self._lock:
            self.warnings.append(message)


def _roots_getter(root_pid: int | Callable[[], RootPid]) -> Callable[[], list[int]]:
    def as_list(value: RootPid) -> list[int]:
        if value is None:
            return []
        if isinstance(value, int):
            return [value]
        return [int(v) for v in value if v]

    if callable(root_pid):
        return lambda: as_list(root_pid())
    fixed = as_list(root_pid)
    return lambda: fixed


def _cell(value: float) -> str | float:
    return "" if value is None else value
