"""How close `moebench plan`'s estimated wall time comes to the time `moebench run` takes (issue 20's goal: within
25%), on the RPC rig: the tiny model, three placements, two processes each, the default sweep's tests; llama-bench
calibrated first (`moebench calibrate --quick`, its own folder). Prints each replicate's estimate, measured time and
error, their median, and per configuration one process's estimated seconds against the median process's
measured duration (where the difference is). Run it alone on the machine: it measures.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.config import load_config  # noqa: E402
from harness.perf.eta import estimate_sweep  # noqa: E402
from harness.results.reader import read_runs  # noqa: E402

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


def per_process(path: Path, folder: Path, env: dict) -> None:
    """Each configuration's estimated seconds of one process against its processes' median duration."""
    os.environ.update(env)
    found = estimate_sweep(load_config(path))
    rows = read_runs(folder)
    durations = rows.groupby(["config_id", "process_index"])["duration_s"].first().groupby("config_id").median()
    for cid, seconds in sorted(found.per_configuration.items()):
        measured = durations.get(cid)
        shown = f"{measured:.2f} s" if measured is not None else "not run"
        print(f"  {cid}: one process estimated {seconds:.2f} s, measured {shown}")


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
            per_process(path, Path(tmp) / "results" / f"eta-{i}", env)
        print(f"median error {statistics.median(errors):+.0f}% over {len(errors)} replicates (goal: within 25%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
