"""`moebench run`'s progress (issue 20): one line per finished process with the counts, elapsed time and time left
off a terminal; the bar's counts and time left on one. The runner's calls (begin, start, result) drive it, on a
clock the test sets. No engine runs."""

from __future__ import annotations

import io

from rich.console import Console

from harness.cli.progress import RunProgress, clock, short


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _drive(progress: RunProgress, now: Clock, seconds: list[float], total: int, done: int = 0) -> None:
    progress.begin(total, done)
    for i, s in enumerate(seconds):
        progress.start(f"[1/2] llama-bench  mainline  synth:tiny  first-n-experts(n={i})")
        now.t += s
        progress.result("pp64 1556.6 t/s")
        progress.result("tg16 218.0 t/s [cv, samples]")


def test_plain_lines_off_a_terminal_one_per_process_with_the_time_left():
    out, now = io.StringIO(), Clock()
    progress = RunProgress(Console(file=out, force_terminal=False, width=40), now)  # never wrapped
    _drive(progress, now, [10, 20, 30], total=6, done=1)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "1 of 6 processes already done"
    assert lines[1] == ("[2/6 processes, 0:10 elapsed, 0:40 left] [1/2] llama-bench mainline synth:tiny "
                        "first-n-experts(n=0): pp64 1556.6 t/s; tg16 218.0 t/s [cv, samples]")
    assert lines[2].startswith("[3/6 processes, 0:30 elapsed, 0:45 left]")  # 15 s a process, 3 left
    assert lines[3].startswith("[4/6 processes, 1:00 elapsed, 0:40 left]")  # the last one flushed by close
    assert len(lines) == 4


def test_adaptive_rounds_grow_the_total_and_a_second_sweep_begins_anew():
    out, now = io.StringIO(), Clock()
    progress = RunProgress(Console(file=out, force_terminal=False, width=200), now)
    _drive(progress, now, [5, 5, 5], total=2)
    _drive(progress, now, [7], total=1)  # tune: the next sweep through the same progress
    progress.close()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines] == [
        "[1/2 processes, 0:05 elapsed, 0:05 left", "[2/2 processes, 0:10 elapsed, 0:00 left",
        "[3/3 processes, 0:15 elapsed, 0:00 left", "[1/1 processes, 0:07 elapsed, 0:00 left"]


def test_on_a_terminal_the_bar_counts_the_processes():
    out, now = io.StringIO(), Clock()
    progress = RunProgress(Console(file=out, force_terminal=True, width=200, highlight=False, color_system=None), now)
    _drive(progress, now, [10, 10], total=4)
    task = progress.bar.tasks[0]
    assert task.completed == 1 and task.fields["times"] == "0:10 elapsed, 0:30 left"  # the second still runs
    progress.close()
    assert task.completed == 2 and task.fields["times"] == "0:20 elapsed, 0:20 left"
    assert "first-n-experts(n=1): pp64 1556.6 t/s" in out.getvalue()


def test_times_and_labels_are_short():
    assert clock(None) == "?" and clock(59.6) == "1:00" and clock(3725) == "1:02:05"
    assert short("a  b " + "x" * 100, 10) == "a b xxxxx…"
