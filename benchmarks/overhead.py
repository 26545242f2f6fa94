"""Does measuring through moebench change what is measured? The same llama-bench configuration, run bare and
through `moebench run`, interleaved in one session; prints tokens/s of each and their ratio (goal: ~1.00),
and the wall time each takes.

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


def bare(engine, model) -> tuple[dict[str, float], float]:
    argv = bench_argv(engine.tool("llama-bench"), model, BenchSettings(**SETTINGS), engine.dialect)
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {t.name: t.tps_mean for t in parse_bench_json(out)}, time.monotonic() - started


def through_moebench(model, folder: Path) -> tuple[dict[str, float], float]:
    config = folder / "bench.yaml"
    config.write_text(f"name: overhead\nmodels: [{{path: {model}}}]\nengines: [mainline]\n"
                      f"bench: {{prompt_tokens: [128], gen_tokens: [32], repetitions: 5, threads: 2}}\n")
    out = folder / "out"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(out)], check=True,
                   capture_output=True)
    elapsed = time.monotonic() - started
    with open(out / "overhead" / "runs.csv", newline="") as fh:
        return {row["test"]: float(row["tps_mean"]) for row in csv.DictReader(fh)}, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    build_engine("mainline", report=lambda m: None)
    engine, model = find_engine("mainline"), synthetic_model("tiny")
    results: dict[str, dict[str, list[float]]] = {"bare": {}, "moebench": {}}
    walls: dict[str, list[float]] = {"bare": [], "moebench": []}
    for _ in range(args.rounds):
        for name in ("bare", "moebench"):  # interleaved: drift hits both alike
            with tempfile.TemporaryDirectory() as tmp:
                tps, wall = bare(engine, model) if name == "bare" else through_moebench(model, Path(tmp))
            walls[name].append(wall)
            for test, value in tps.items():
                results[name].setdefault(test, []).append(value)
    print(f"{'test':8s} {'bare t/s':>10s} {'moebench t/s':>13s} {'ratio':>7s}")
    for test in results["bare"]:
        b, m = statistics.median(results["bare"][test]), statistics.median(results["moebench"][test])
        print(f"{test:8s} {b:10.1f} {m:13.1f} {m / b:7.3f}")
    b, m = statistics.median(walls["bare"]), statistics.median(walls["moebench"])
    print(f"wall s   {b:10.2f} {m:13.2f} {m / b:7.3f}   (moebench includes Python start-up and inspection)")


if __name__ == "__main__":
    main()
