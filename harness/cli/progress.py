"""What `moebench run` (and tune, calibrate) show while a sweep runs (issue 20): one progress bar (processes done
of all, elapsed, time left) with one short line per finished process above it; off a terminal (CI, a log file,
tests) the same as plain lines, one per process, each with the counts and times.

It implements the runner's `SweepProgress` (begin, start, result): a process is finished when the next one
starts, or at the end (`close`), so the runner needs no other call. The time left is the elapsed time per
process finished in this session times the processes left (each process loads the model, warms up and measures,
so they take alike); until one has finished there is none. Adaptive rounds (`bench.until`) add processes beyond
the first total: the total grows with them.
"""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

LABEL_CHARS = 70


def clock(seconds: float | None) -> str:
    """h:mm:ss (m:ss under an hour); "?" for None."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def short(label: str, limit: int = LABEL_CHARS) -> str:
    """A configuration's label in at most `limit` characters (runs of spaces folded)."""
    label = " ".join(label.split())
    return label if len(label) <= limit else label[: limit - 1] + "…"


class RunProgress:
    """The runner's `SweepProgress` for a console: a rich bar on a terminal, plain lines elsewhere."""

    def __init__(self, console: Console, now: Callable[[], float] = time.monotonic):
        self.console, self.now = console, now
        self.live = console.is_terminal
        self.bar = Progress(TextColumn("{task.completed}/{task.total} processes"), BarColumn(),
                            TextColumn("{task.fields[times]}"), TextColumn("{task.description}"),
                            console=console, transient=True, disable=not self.live)
        self.task = None
        self.total = self.done = self.done_here = 0
        self.started = None
        self.current: str | None = None
        self.results: list[str] = []

    def begin(self, total: int, already_done: int) -> None:
        """A sweep begins (tune and calibrate run several through one progress: each begins anew)."""
        self._finish()
        self.total, self.done, self.done_here, self.started = total, already_done, 0, self.now()
        if self.live:
            if self.task is None:
                self.bar.start()
                self.task = self.bar.add_task("", total=total, completed=already_done, times="")
            self.bar.update(self.task, total=total, completed=already_done, description="starting",
                            times=self.times())
        if already_done:
            self.console.print(f"{already_done} of {total} processes already done")

    def start(self, label: str) -> None:
        self._finish()
        self.current, self.results = short(label), []
        self.total = max(self.total, self.done + 1)  # adaptive rounds add processes
        if self.live:
            self.bar.update(self.task, total=self.total, description=escape(self.current), times=self.times())

    def result(self, text: str) -> None:
        self.results.append(text)

    def close(self) -> None:
        self._finish()
        if self.live and self.task is not None:
            self.bar.stop()

    def eta_s(self) -> float | None:
        """Seconds left at the pace of this session's finished processes; None before the first."""
        if not self.done_here:
            return None
        return (self.now() - self.started) / self.done_here * max(self.total - self.done, 0)

    def times(self) -> str:
        elapsed = clock(self.now() - self.started) if self.started is not None else "0:00"
        return f"{elapsed} elapsed, {clock(self.eta_s())} left"

    def _finish(self) -> None:
        """The current process is over: count it and say it in one line."""
        if self.current is None:
            return
        self.done += 1
        self.done_here += 1
        line = f"{self.current}: {'; '.join(self.results) or 'no result'}"
        if self.live:
            self.bar.update(self.task, completed=self.done, times=self.times())
            self.console.print(escape(line))
        else:
            self.console.print(escape(f"[{self.done}/{self.total} processes, {self.times()}] {line}"),
                               soft_wrap=True)  # one line per process in a log, however narrow
        self.current, self.results = None, []
