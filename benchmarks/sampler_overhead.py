"""What does telemetry cost? The real mainline llama-bench on the tiny model, run without a sampler and under
one at 10 Hz and at 50 Hz, rotating the order every round in one session (drift hits all alike). Prints:

- the sampling thread's CPU time (`Sampler.cpu_seconds`, its own `time.thread_time()`) as % of one core over
  the time it sampled the engine's process tree (goal at 10 Hz: under 0.5 %);
- tokens/s per llama-bench test with sampling on over sampling off: the median over rounds of the ratio within
  each round (goal: at least 0.99), with its quartiles, next to a second run without sampling ("off again"),
  whose ratio to "off" shows how much of that is the machine's own noise.

On a machine with an NVIDIA driver the NVML calls are included (each PCIe throughput call waits ~20 ms in the
driver, which costs wall time but little CPU); without one, only the psutil side is measured.

    .venv/bin/python benchmarks/sampler_overhead.py [--rounds 10] [--threads N]   # N: default all CPUs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness import procs
from harness.config import BenchSettings
from harness.engines.build import build_engine
from harness.engines.discover import find_engine
from harness.models import synthetic_model
from harness.tools.llama_bench import bench_argv, parse_bench_json
from harness.telemetry import Sampler

MODES = ("off", "off again", 10.0, 50.0)  # "off again": a second run without sampler, the noise floor


def one_run(argv: list[str], hz: float, out: Path) -> tuple[dict[str, float], float, float, int]:
    """tokens/s per test (median of its repetitions), the sampler's CPU seconds, the seconds it sampled, and
    its sample count."""
    with open(out, "wb") as fh:
        proc = procs.start(argv, stdout=fh, stderr=subprocess.DEVNULL)
        try:
            if hz:
                with Sampler(proc.pid, hz=hz) as sampler:
                    started = time.monotonic()
                    proc.wait()
                    sampled_s = time.monotonic() - started
                cpu_s, n = sampler.cpu_seconds, len(sampler.samples)
            else:
                proc.wait()
                cpu_s, sampled_s, n = 0.0, 0.0, 0
        finally:
            procs.stop(proc)
    if proc.returncode != 0:
        raise SystemExit(f"llama-bench failed with code {proc.returncode}: {' '.join(argv)}")
    tps = {test.name: statistics.median(test.tps_samples or [test.tps_mean])
           for test in parse_bench_json(out.read_text())}
    return tps, cpu_s, sampled_s, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    build_engine("mainline", report=lambda m: None)
    engine = find_engine("mainline")
    settings = BenchSettings(prompt_tokens=[512], gen_tokens=[128], repetitions=5)
    argv = bench_argv(engine.tool("llama-bench"), synthetic_model("tiny"), settings, ["-t", str(args.threads)])
    tps: dict[object, list[dict[str, float]]] = {mode: [] for mode in MODES}
    cost = {mode: [0.0, 0.0, 0] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            k = round_ % len(MODES)
            for mode in MODES[k:] + MODES[:k]:  # rotate who goes first
                hz = mode if isinstance(mode, float) else 0.0
                result, cpu_s, sampled_s, n = one_run(argv, hz, Path(tmp) / "bench.json")
                tps[mode].append(result)
                cost[mode][0] += cpu_s
                cost[mode][1] += sampled_s
                cost[mode][2] += n
    print(f"llama-bench {engine.name}, tiny model, {' '.join(argv[3:])}; {args.rounds} rounds, order rotated; "
          f"{os.cpu_count()} CPUs")
    for mode in MODES[2:]:
        cpu_s, sampled_s, n = cost[mode]
        print(f"sampler at {mode:4.0f} Hz: {100 * cpu_s / sampled_s:.3f} % of one core "
              f"({1e3 * cpu_s / n:.3f} ms CPU per sample, {n / sampled_s:.1f} samples/s achieved)")
    print("tokens/s, medians; ratio: median over rounds of (this mode / 'off' in the same round), with its "
          "quartiles")
    print(f"{'test':8s} {'off t/s':>9s}" + "".join(f" {str(m) if isinstance(m, str) else f'{m:.0f} Hz':>10s}"
                                                   f" {'ratio [q1, q3]':>21s}" for m in MODES[1:]))
    for test in tps["off"][0]:
        line = f"{test:8s} {statistics.median(r[test] for r in tps['off']):9.1f}"
        for mode in MODES[1:]:
            ratios = sorted(on[test] / off[test] for on, off in zip(tps[mode], tps["off"]))
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            line += (f" {statistics.median(r[test] for r in tps[mode]):10.1f}"
                     f" {statistics.median(ratios):7.3f} [{q1:.3f}, {q3:.3f}]")
        print(line)


if __name__ == "__main__":
    main()
