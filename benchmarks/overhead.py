"""Does measuring through moebench change what is measured? The same llama-bench processes (the tiny model with
five seeds, prompt processing and generation in their own processes, as moebench runs them), run through one
`moebench run` and bare (the exact argument lists moebench ran, read back from its rows), alternately, round
after round, so that drift hits both alike. Prints per test the median tokens/s of each, the ratio
moebench ÷ bare per round (median and its spread over the rounds; goal: at least 0.99), and moebench's extra
wall time per configuration (Python start-up, model inspection, telemetry, rows).

    .venv/bin/python benchmarks/overhead.py [--rounds 6]

Run it alone: anything else on the machine (a build, the tests, another benchmark) is noise in the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.engines.build import build_engine
from harness.intervals import confidence_interval
from harness.models import synthetic_model
from harness.results.reader import read_records
from harness.tools.llama_bench import parse_bench_json

SEEDS = range(5)
BENCH = "{prompt_tokens: [512], gen_tokens: [128], repetitions: 3, processes: 1}"


def through_moebench(folder: Path) -> tuple[dict[str, list[float]], float, list[list[str]]]:
    config = folder / "bench.yaml"
    models = ", ".join(f"{{synth: tiny, seed: {s}}}" for s in SEEDS)
    config.write_text(f"name: overhead\nmodels: [{models}]\nengines: [mainline]\norder: {{random: false}}\n"
                      f"bench: {BENCH}\n")
    out = folder / "out"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)], check=True,
                   capture_output=True)
    elapsed = time.monotonic() - started
    tps: dict[str, list[float]] = {}
    commands = []
    for row in read_records(out / "overhead"):
        tps.setdefault(row["test"], []).append(float(row["tps_mean"]))
        commands.append(json.loads(row["command"]))
    return tps, elapsed, commands


def bare(commands: list[list[str]]) -> tuple[dict[str, list[float]], float]:
    tps: dict[str, list[float]] = {}
    started = time.monotonic()
    for argv in commands:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for test in parse_bench_json(out):
            tps.setdefault(test.name, []).append(test.tps_mean)
    return tps, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    build_engine("mainline", report=lambda m: None)
    for s in SEEDS:
        synthetic_model("tiny", seed=s)
    ratios: dict[str, list[float]] = {}
    medians: dict[str, dict[str, list[float]]] = {"bare": {}, "moebench": {}}
    walls: dict[str, list[float]] = {"bare": [], "moebench": []}
    with tempfile.TemporaryDirectory() as tmp:
        commands = through_moebench(Path(tmp))[2]  # the argument lists to run bare (and a warm-up)
    for round_ in range(args.rounds):
        per: dict[str, dict[str, list[float]]] = {}
        for name in (("moebench", "bare") if round_ % 2 == 0 else ("bare", "moebench")):  # alternate the lead
            with tempfile.TemporaryDirectory() as tmp:
                tps, wall = through_moebench(Path(tmp))[:2] if name == "moebench" else bare(commands)
            per[name] = tps
            walls[name].append(wall)
        for test in per["bare"]:
            b, m = statistics.median(per["bare"][test]), statistics.median(per["moebench"][test])
            ratios.setdefault(test, []).append(m / b)
            medians["bare"].setdefault(test, []).append(b)
            medians["moebench"].setdefault(test, []).append(m)
    print(f"{args.rounds} rounds, {len(SEEDS)} configurations each, alternating who goes first")
    print(f"{'test':8s} {'bare t/s':>10s} {'moebench t/s':>13s} {'ratio':>7s}  {'95% CI of the mean ratio':>24s}"
          f"  {'per round (min..max)':>20s}")
    for test, values in ratios.items():
        b, m = statistics.median(medians["bare"][test]), statistics.median(medians["moebench"][test])
        mean, low, high = confidence_interval(values)
        print(f"{test:8s} {b:10.1f} {m:13.1f} {statistics.median(values):7.3f}  {low:11.3f} .. {high:.3f} "
              f"(mean {mean:.3f})  {min(values):8.3f} .. {max(values):.3f}")
    b, m = statistics.median(walls["bare"]), statistics.median(walls["moebench"])
    print(f"wall s   {b:10.2f} {m:13.2f}   extra per configuration: {(m - b) / len(SEEDS):.2f} s")


if __name__ == "__main__":
    main()
