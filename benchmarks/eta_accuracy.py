"""How close `moebench plan`'s estimated wall time comes to the time `moebench run` takes (issue 20's goal: within
25%), on the RPC rig: the tiny model, three placements, two processes each, the default sweep's tests; llama-bench
calibrated first (`moebench calibrate --quick`, its own folder). Prints each replicate's estimate, measured time and
error, and their median. Run it alone on the machine: it measures.

    python benchmarks/eta_accuracy.py [--replicates 3] [--tools llama-bench[,llama-server]]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = """\
name: eta-{i}
output: {out}
models: [{{synth: tiny}}]
engines: [mainline]
tools: [{tools}]
rpc_rig: true
strategies: [all-gpu, cpu-moe, {{name: first-n-experts, params: {{n: [2]}}}}]
bench: {{prompt_tokens: [512], gen_tokens: [128], repetitions: 1, processes: 2, ctx: 1024}}
"""


def moebench(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)


def estimated_s(text: str) -> float:
    found = re.search(r"estimated wall time: (?:(\d+) h )?(?:(\d+) min )?(?:(\d+) s)?", text)
    h, m, s = (int(x or 0) for x in found.groups())
    return h * 3600 + m * 60 + s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--tools", default="llama-bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MOEBENCH_CALIBRATION": str(Path(tmp) / "calibration")}
        tools = args.tools.split(",")
        for tool in tools:
            moebench("calibrate", "--rpc-rig", "--tool", tool, "--processes", "1", "--quick", env=env)
        errors = []
        for i in range(args.replicates):
            path = Path(tmp) / f"eta-{i}.yaml"
            path.write_text(SWEEP.format(i=i, out=Path(tmp) / "results", tools=", ".join(tools)))
            estimate = estimated_s(moebench("plan", str(path), env=env).stdout)
            started = time.monotonic()
            moebench("run", str(path), env=env)
            measured = time.monotonic() - started
            errors.append(100 * (estimate / measured - 1))
            print(f"replicate {i}: estimated {estimate:.0f} s, measured {measured:.1f} s, error {errors[-1]:+.0f}%")
        print(f"median error {statistics.median(errors):+.0f}% over {len(errors)} replicates (goal: within 25%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
