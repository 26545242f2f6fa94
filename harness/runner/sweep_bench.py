"""ik_llama.cpp's llama-sweep-bench as a measuring tool: prompt processing and generation speed as the context
fills up, one ubatch at a time. Its result table (stdout):

    |    PP |     TG |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |
    |   128 |     32 |      0 |    0.019 |  6619.78 |    0.017 |  1853.03 |
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.config import BenchSettings
from harness.runner.llama_bench import BenchOutputError, BenchTest

_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|"
                  r"\s*([\d.]+)\s*\|\s*$")


def sweep_bench_argv(binary: Path, model: Path, settings: BenchSettings, extra: list[str]) -> list[str]:
    """`extra`: the configuration's knob and placement arguments (`harness.runner.commands`); the micro-batch
    (`-ub`) is also its prompt-processing step."""
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
        tests.append(BenchTest(pp, 0, n_kv, pp_tps, 0.0, [pp_tps], {}))
        tests.append(BenchTest(0, tg, n_kv, tg_tps, 0.0, [tg_tps], {}))
    if not tests:
        raise BenchOutputError("no result table in llama-sweep-bench output")
    return tests
