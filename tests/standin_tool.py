"""A stand-in engine tool for the scheduler's and runner's unit tests: it runs no engine and measures
deterministically (each process's samples are drawn from a generator seeded with its log file's name, so the
same process measures the same on every run and on resume). A configuration with `fail` in its parameters
fails the way an engine that crashes does (`RunFailed`). With `window_s`, each test takes that long and
reports its window (`windows_mono`), as llama-bench's processes do, so a sampler beside it attributes figures to
it."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from harness.tools.base import SERVER_PORT, PlannedRun, Tool
from harness.tools.measurement import BenchTest, BenchTests, ProcessSettings, RunFailed


class StandInTool(Tool):
    name = "stand-in"

    def __init__(self):
        self.processes: list[str] = []   # the log file of every process it ran, in order
        self.window_s = 0.0              # how long each test takes (0: no time, no window)

    def commands(self, conf: PlannedRun, bench: BenchTests, *, port: int | str = SERVER_PORT) -> list[list[str]]:
        return [["stand-in", "-m", str(conf.model.path), "-r", str(bench.repetitions), *self.args(conf)]]

    def measure(self, conf, settings: ProcessSettings, log_path: Path) -> list[tuple[BenchTest, list[str]]]:
        [argv] = self.commands(conf, settings.bench)
        self.processes.append(log_path.name)
        log_path.write_text("stand-in: measured without an engine\n")
        if conf.params.get("fail"):
            raise RunFailed("stand-in failed as asked: exit code 134")
        rng = random.Random(log_path.name)
        base = 100.0 + 10 * conf.params.get("n", 0)
        tests = []
        for n_prompt, n_gen, speed in [(p, 0, 8 * base) for p in settings.bench.prompt_tokens] + \
                                      [(0, g, base) for g in settings.bench.gen_tokens]:
            samples = [speed * rng.uniform(0.97, 1.03) for _ in range(settings.bench.repetitions)]
            std = statistics.stdev(samples) if len(samples) > 1 else 0.0
            windows = []
            if self.window_s:
                start = time.monotonic()
                time.sleep(self.window_s)
                windows = [(start, time.monotonic())]
            tests.append((BenchTest(n_prompt, n_gen, 0, statistics.fmean(samples), std, samples,
                                    windows_mono=windows), argv))
        return tests
