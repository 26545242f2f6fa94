"""Does measuring through moebench change what is measured? The same llama-bench configurations (the tiny
model with five seeds), run bare and through one `moebench run`, alternately in one session; prints the
tokens/s of each and their ratio (goal: at least 0.99) and moebench's extra wall time per configuration
(goal: under 0.3 s; Python start-up and model inspection included).

    .venv/bin/python benchmarks/overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.config import BenchSettings
from harness.engines.build import build_engine
from harness.engines.discover import find_engine
from harness.models import synthetic_model
from harness.runner.llama_bench import bench_argv, parse_bench_json

REPO = Path(__file__).resolve().parent.parent
SETTINGS = dict(prompt_tokens=[128], gen_tokens=[32], repetitions=5, threads=2)


SEEDS = range(5)


def bare(engine, models) -> tuple[dict[str, list[float]], float]:
    tps: dict[str, list[float]] = {}
    started = time.monotonic()
    for model in models:
        argv = bench_argv(engine.tool("llama-bench"), model, BenchSettings(**SETTINGS), engine.dialect)
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for test in parse_bench_json(out):
            tps.setdefault(test.name, []).append(test.tps_mean)
    return tps, time.monotonic() - started


def through_moebench(folder: Path) -> tuple[dict[str, list[float]], float]:
    config = folder / "bench.yaml"
    models = ", ".join(f"{{synth: tiny, seed: {s}}}" for s in SEEDS)
    config.write_text(f"name: overhead\nmodels: [{models}]\nengines: [mainline]\norder: {{random: false}}\n"
                      f"bench: {{prompt_tokens: [128], gen_tokens: [32], repetitions: 5, threads: 2}}\n")
    out = folder / "out"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)], check=True,
                   capture_output=True)
    elapsed = time.monotonic() - started
    tps: dict[str, list[float]] = {}
    with open(out / "overhead" / "runs.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            tps.setdefault(row["test"], []).append(float(row["tps_mean"]))
    return tps, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    build_engine("mainline", report=lambda m: None)
    engine = find_engine("mainline")
    models = [synthetic_model("tiny", seed=s) for s in SEEDS]
    results: dict[str, dict[str, list[float]]] = {"bare": {}, "moebench": {}}
    walls: dict[str, list[float]] = {"bare": [], "moebench": []}
    for _ in range(args.rounds):
        for name in ("bare", "moebench"):  # alternately: drift hits both alike
            with tempfile.TemporaryDirectory() as tmp:
                tps, wall = bare(engine, models) if name == "bare" else through_moebench(Path(tmp))
            walls[name].append(wall)
            for test, values in tps.items():
                results[name].setdefault(test, []).extend(values)
    print(f"{'test':8s} {'bare t/s':>10s} {'moebench t/s':>13s} {'ratio':>7s}")
    for test in results["bare"]:
        b, m = statistics.median(results["bare"][test]), statistics.median(results["moebench"][test])
        print(f"{test:8s} {b:10.1f} {m:13.1f} {m / b:7.3f}")
    b, m = statistics.median(walls["bare"]), statistics.median(walls["moebench"])
    print(f"wall s   {b:10.2f} {m:13.2f}   extra per configuration: {(m - b) / len(SEEDS):.2f} s "
          f"({len(SEEDS)} configurations a sweep; Python start-up and inspection included)")


if __name__ == "__main__":
    main()
