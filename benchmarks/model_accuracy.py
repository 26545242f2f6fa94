"""How well the performance model predicts placements it was not calibrated on.

Calibrates each engine on the `tiny` model (`moebench calibrate`), then sweeps the built-in strategies over a few
parameter values on *other* models (`tiny-glm`: GLM layout with a dense layer and a shared expert; `small`: 16
wider layers) and prints, per engine and test kind, the median and worst absolute error of the predicted tokens/s
(against each configuration's mean over its processes, and against its median, which a slow stretch of a shared
machine moves less), the Spearman rank correlation of predicted against measured, and how many predictions lie
inside the measured 95% interval. Goals (issue 12): median tg error <= 10%, median pp error <= 15%, Spearman >= 0.9.

    python benchmarks/model_accuracy.py [--engines mainline ik] [--processes 3] [--out DIR] [--rpc-rig | --device CUDA0]

Run it alone on the machine: it measures. On a GPU machine scripts/device-check.sh runs it with --device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.analysis.explain import explain_folder  # noqa: E402
from harness.config import BenchConfig  # noqa: E402
from harness.tune.calibrate import calibrate  # noqa: E402
from harness.runner.sweep import PrintProgress, run_sweep  # noqa: E402

STRATEGIES = [
    {"name": "all-gpu"}, {"name": "cpu-moe"},
    {"name": "first-n-experts", "params": {"n": [1, 3]}}, {"name": "last-n-experts", "params": {"n": [1, 3]}},
    {"name": "head-tail-experts", "params": {"head": 1, "tail": 1}}, {"name": "gpu-layers", "params": {"k": [2, 4]}},
    {"name": "partial-experts", "params": {"n": 2, "parts": "down"}},
    {"name": "last-n-layers-cpu", "params": {"n": 1}},
]
MODELS = ["tiny-glm", "small"]


def tools_for(engine: str, rpc_rig: bool) -> list[str]:
    return ["llama-server"] if (engine == "ik" and rpc_rig) else ["llama-bench"]


def sweep(engine: str, *, rpc_rig: bool, device: str | None, processes: int, out: Path, quiet) -> Path:
    config = BenchConfig.model_validate({
        "name": f"accuracy-{engine}", "output": str(out), "models": [{"synth": m} for m in MODELS],
        "engines": [engine], "tools": tools_for(engine, rpc_rig), "rpc_rig": rpc_rig,
        "devices": [device] if device else [], "strategies": STRATEGIES, "telemetry": {"enabled": False},
        "bench": {"prompt_tokens": [512], "gen_tokens": [128], "repetitions": 1, "processes": processes,
                  "ctx": 1024},
    })
    return run_sweep(config, out, PrintProgress(quiet), resume=True)


def accuracy(folder: Path) -> pd.DataFrame:
    """Per configuration and test: the mean measured over its processes and the prediction of the calibration
    stored now (the same code as `moebench explain`)."""
    explained = explain_folder(folder)
    if explained.problem:
        raise SystemExit(explained.problem)
    rows = explained.rows
    rows = rows.assign(error_vs_median_pct=100 * (rows["predicted_tps"] / rows["measured_median_tps"] - 1))
    return rows[["engine", "tool", "model", "placement", "kind", "measured_tps", "measured_median_tps",
                 "predicted_tps", "error_pct", "error_vs_median_pct", "beyond_noise", "processes", "graph_splits",
                 "predicted_graph_splits"]].rename(
        columns={"measured_tps": "measured", "measured_median_tps": "median", "predicted_tps": "predicted"})


def summary(per_conf: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (engine, kind), g in per_conf.dropna(subset=["predicted"]).groupby(["engine", "kind"]):
        rho = spearmanr(g["predicted"], g["measured"]).statistic if len(g) > 2 else float("nan")
        rho_median = spearmanr(g["predicted"], g["median"]).statistic if len(g) > 2 else float("nan")
        out.append({"engine": engine, "kind": kind, "configurations": len(g),
                    "median_abs_error_pct": g["error_pct"].abs().median(),
                    "worst_abs_error_pct": g["error_pct"].abs().max(), "spearman": rho,
                    "median_abs_error_vs_median_pct": g["error_vs_median_pct"].abs().median(),
                    "spearman_vs_median": rho_median,
                    "within_95ci": f"{int((g['beyond_noise'] == False).sum())}/{len(g)}",  # noqa: E712
                    "splits_match": int((g["graph_splits"] == g["predicted_graph_splits"]).sum())})
    return pd.DataFrame(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["mainline", "ik"])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--out", type=Path, help="keep the sweeps here (default: a temporary folder)")
    parser.add_argument("--device", help="a GPU (CUDA0) instead of the RPC rig")
    parser.add_argument("--skip-calibration", action="store_true", help="use the calibrations already stored")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    rpc_rig = args.device is None
    out = args.out or Path(tempfile.mkdtemp(prefix="moebench-accuracy-"))
    quiet = print if args.verbose else (lambda *_: None)
    started = time.monotonic()
    frames = []
    for engine in args.engines:
        if not args.skip_calibration:
            t0 = time.monotonic()
            cal = calibrate({"name": engine}, rpc_rig=rpc_rig, device=args.device,
                            tools=tools_for(engine, rpc_rig), processes=args.processes,
                            progress=PrintProgress(quiet))
            for tool, found in cal.tools.items():
                print(f"calibrated {engine} {tool} in {time.monotonic() - t0:.0f} s: fit error on tiny "
                      + ", ".join(f"{k} {v:.1f}%" for k, v in found.median_abs_error_pct.items()))
        t0 = time.monotonic()
        folder = sweep(engine, rpc_rig=rpc_rig, device=args.device, processes=args.processes, out=out, quiet=quiet)
        print(f"swept {engine} on {', '.join(MODELS)} in {time.monotonic() - t0:.0f} s: {folder}")
        frames.append(accuracy(folder))
    per_conf = pd.concat(frames, ignore_index=True)
    with pd.option_context("display.width", 200, "display.max_rows", 200, "display.precision", 1):
        print(per_conf.to_string(index=False))
        print()
        print(summary(per_conf).to_string(index=False))
    print(f"\ntotal {time.monotonic() - started:.0f} s; goals: median tg error <= 10%, pp <= 15%, Spearman >= 0.9")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
