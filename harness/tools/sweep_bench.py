"""ik_llama.cpp's llama-sweep-bench as a measuring tool: prompt processing and generation speed as the context
fills up, one ubatch at a time, every depth in one process. Its result table (stdout):

    |    PP |     TG |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |
    |   128 |     32 |      0 |    0.019 |  6619.78 |    0.017 |  1853.03 |
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import procs
from harness.tools.base import SERVER_PORT, PlannedRun, RowTest, Tool
from harness.tools.measurement import BenchOutputError, BenchTest, BenchTests, ProcessSettings, failure

_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|"
                  r"\s*([\d.]+)\s*\|\s*$")


def sweep_bench_argv(binary: Path, model: Path, settings: BenchTests, extra: list[str]) -> list[str]:
    """`extra`: the configuration's knob and placement arguments (`Tool.args`); the micro-batch (`-ub`) is also
    its prompt-processing step."""
    return [str(binary), "-m", str(model), "-c", str(settings.ctx), *extra]


def parse_sweep_table(text: str) -> list[BenchTest]:
    """One pp and one tg test per context depth (N_KV); each a single measurement."""
    tests, seen = [], set()
    for line in text.splitlines():
        m = _ROW.match(re.sub(r"^\[\d+\]\s*", "", line.strip()))  # llama.log lines start with "[time] "
        if not m or m.group(0) in seen:
            continue
        seen.add(m.group(0))
        if not m:
            continue
        pp, tg, n_kv = int(m.group(1)), int(m.group(2)), int(m.group(3))
        pp_tps, tg_tps = float(m.group(5)), float(m.group(7))
        tests.append(BenchTest(pp, 0, n_kv, pp_tps, 0.0, [pp_tps]))
        tests.append(BenchTest(0, tg, n_kv, tg_tps, 0.0, [tg_tps]))
    if not tests:
        raise BenchOutputError("no result table in llama-sweep-bench output")
    return tests


class SweepBenchTool(Tool):
    """Its context is `ctx`; it always prints its load report."""

    name = "llama-sweep-bench"

    def row_tests(self, bench: BenchTests, ubatch: int, n_ctx: int) -> list[RowTest]:
        """A prompt of `ubatch` tokens and `ubatch / 4` generated at every context depth it steps through, 0,
        `ubatch`, 2 `ubatch`, ... below the context it allocated (ik's examples/sweep-bench/sweep-bench.cpp: pp =
        n_ubatch, tg = n_ubatch / 4 unless `-n` is given, the loop over n_kv in steps of n_ubatch below
        llama_n_ctx)."""
        depths = range(0, n_ctx, max(ubatch, 1))
        return [test for d in depths for test in (("pp", ubatch, d), ("tg", ubatch // 4, d)) if test[1]]

    def commands(self, conf: PlannedRun, bench: BenchTests, *, port: int | str = SERVER_PORT) -> list[list[str]]:
        return [sweep_bench_argv(self.binary(conf), conf.model.path, bench, self.args(conf))]

    def measure(self, conf: PlannedRun, settings: ProcessSettings, log_path: Path
                ) -> list[tuple[BenchTest, list[str]]]:
        """Every depth in one process. Its table gives no timestamps, so its rows get no per-phase telemetry
        (the whole process's figures would misattribute every depth)."""
        [argv] = self.commands(conf, settings.bench)
        stdout_path = log_path.with_suffix(".out")
        result = procs.run(argv, timeout_s=settings.timeout_s, log_path=log_path, stdout_path=stdout_path,
                           cwd=log_path.parent, cpus=settings.cpus)
        if not result.ok:
            raise failure(result.describe_failure(), result.output_tail)
        try:
            # the table goes to stdout or, through ik's logger, to stderr: read both
            text = stdout_path.read_text(errors="replace") + log_path.read_text(errors="replace")
            return [(test, argv) for test in parse_sweep_table(text)]
        except BenchOutputError as exc:
            raise failure(str(exc), result.output_tail) from None
