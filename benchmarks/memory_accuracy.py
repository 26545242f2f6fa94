"""How well moebench predicts the memory the engines allocate, in all three parts, per device.

For every tiny synthetic preset (`PRESETS` below: each tiny architecture, split and unsplit where a split preset
exists), sweeps placements x contexts (512, 4096, 16384) x cache types (f16, q8_0, q4_0; flash attention on, and
f16 without) x micro-batches on both engines, every device on the RPC rig (the engine's own RPC server on
loopback), through the ordinary runner (`moebench run`): llama-server, started, asked for a few tokens, stopped
(ik's llama-bench cannot place weights on an RPC device; its server can). Each row of runs.csv carries the
predicted and the engine's own reported bytes (`predicted_model_buffers` / `actual_model_buffers`, `..._kv_...`,
`..._compute_...`, per device under the engine's names). Prints, per engine, architecture and part, the worst
difference predicted - reported (MiB and % of the report) and how many configurations were compared.

Goals (issue 19): model buffers and KV cache equal the report (print rounding: 0.01 MiB); compute buffers within
10% and never under by more than 5%. It compares bytes, not speed: it can run beside other work.

    python benchmarks/memory_accuracy.py [--engines mainline ik] [--presets tiny tiny-glm] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.analysis.markdown import markdown_table  # noqa: E402
from harness.config import BenchConfig  # noqa: E402
from harness.models.presets import PRESETS as ALL_PRESETS  # noqa: E402
from harness.results.reader import by_device, read_devices, read_runs  # noqa: E402
from harness.runner.sweep import PrintProgress, run_sweep  # noqa: E402
from harness.units import MIB  # noqa: E402

# every tiny preset is compared; a preset added to harness/models/presets.py (a new architecture, a split file)
# is picked up here by its name
PRESETS = [name for name, p in ALL_PRESETS.items() if name.startswith("tiny") and not p.full_size]
STRATEGIES = [
    {"name": "all-gpu"}, {"name": "cpu-moe"}, {"name": "first-n-experts", "params": {"n": 2}},
    {"name": "gpu-layers", "params": {"k": 3}},
]
CONTEXTS = [512, 4096, 16384]
CACHES = [("f16", "f16", True), ("q8_0", "q8_0", True), ("q4_0", "q4_0", True), ("f16", "f16", False)]
UBATCHES = [512, 64]
GOAL_UNDER_PCT, GOAL_OVER_PCT = 5.0, 10.0   # compute buffers: never under by more than 5%, within 10%
PRINT_ROUNDING_MIB = 0.01                   # model and KV: the engines print MiB with two decimals
PARTS = {"model": "model_bytes", "KV": "kv_bytes", "compute": "compute_bytes"}  # devices.csv figures


def sweep(engine: str, presets: list[str], out: Path, *, quick: bool) -> list[Path]:
    """One sweep per engine; each cache setting its own sweep (cache types and flash attention are knobs that
    cross with every other axis)."""
    folders = []
    caches = CACHES[:1] + CACHES[-1:] if quick else CACHES
    for i, (k, v, fa) in enumerate(caches):
        config = BenchConfig.model_validate({
            "name": f"memory-{engine}-{i}", "output": str(out), "models": [{"synth": m} for m in presets],
            "engines": [engine], "tools": ["llama-server"], "rpc_rig": True,
            "strategies": STRATEGIES[:2] if quick else STRATEGIES, "telemetry": {"enabled": False},
            "bench": {"prompt_tokens": [8], "gen_tokens": [4], "repetitions": 1, "processes": 1,
                      "cache_type_k": k, "cache_type_v": v, "flash_attn": fa,
                      "ubatch": UBATCHES[:1] if quick else UBATCHES},
        })
        for ctx in CONTEXTS[::2] if quick else CONTEXTS:
            config = config.model_copy(update={"name": f"memory-{engine}-{i}-ctx{ctx}",
                                               "bench": config.bench.model_copy(update={"ctx": ctx})})
            folders.append(run_sweep(config, out, PrintProgress(lambda text: None), resume=True))
    return folders


def differences(folder: Path) -> pd.DataFrame:
    """One row per configuration, device and part: predicted and reported bytes."""
    rows = read_runs(folder)
    rows = rows[rows["status"] == "ok"].drop_duplicates("config_id")
    devices = read_devices(folder)
    figures = {f"{side}_{column}": by_device(devices, f"{side}_{column}")
               for column in PARTS.values() for side in ("predicted", "actual")}
    out = []
    for _, r in rows.iterrows():
        for part, column in PARTS.items():
            predicted = figures[f"predicted_{column}"].get(str(r["run_id"]))
            actual = figures[f"actual_{column}"].get(str(r["run_id"]))
            if predicted is None or actual is None:
                continue
            for device in set(predicted) | set(actual):
                out.append({"engine": r["engine"], "model": r["model"], "arch": r["model_arch"], "part": part,
                            "device": "CPU" if device == "CPU" else "accelerator", "config": r["config_id"],
                            "label": f"{r['strategy']}{_params(r['strategy_params'])} {r['sweep'].rsplit('-', 1)[-1]} "
                                     f"ub={r.get('ubatch', '')} {r.get('cache_type_k', '')} fa={r.get('flash_attn')}",
                            "predicted": predicted.get(device, 0), "actual": actual.get(device, 0)})
    return pd.DataFrame(out)


def _params(cell) -> str:
    return f" {cell}" if isinstance(cell, str) and cell not in ("", "{}") else ""


def worst(frame: pd.DataFrame) -> pd.DataFrame:
    """Per engine, model and part: how many (configuration, device) pairs meet the goal (model and KV: equal to
    the print rounding, 0.01 MiB; compute: -5% to +10%), the largest difference either way (MiB and % of the
    report), the largest under-prediction in %, and where the largest difference was."""
    frame = frame.reset_index(drop=True)
    frame = frame.assign(diff_mib=(frame.predicted - frame.actual) / MIB,
                         diff_pct=100 * (frame.predicted - frame.actual) / frame.actual.where(frame.actual > 0))
    out = []
    for (engine, model, arch, part), g in frame.groupby(["engine", "model", "arch", "part"], sort=False):
        i = g.diff_mib.abs().idxmax()
        pct = g.diff_pct.dropna()
        if part == "compute":
            met = ((g.diff_pct >= -GOAL_UNDER_PCT) & (g.diff_pct <= GOAL_OVER_PCT)).sum()
        else:
            met = (g.diff_mib.abs() <= PRINT_ROUNDING_MIB).sum()
        out.append({"engine": engine, "model": f"{model} ({arch})", "part": part,
                    "meets goal": f"{met} of {len(g)}",
                    "worst MiB": round(g.diff_mib[i], 2),
                    "worst %": round(pct.loc[pct.abs().idxmax()], 1) if len(pct) else None,
                    "worst under %": round(min(pct.min(), 0.0), 1) if len(pct) else None,
                    "where": g.label[i] + f" ({g.device[i]})"})
    return pd.DataFrame(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["mainline", "ik"])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="two caches, two contexts, two strategies, one ubatch")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="memory-accuracy-"))
    frames = [differences(folder) for engine in args.engines
              for folder in sweep(engine, args.presets, out, quick=args.quick)]
    table = worst(pd.concat(frames, ignore_index=True))
    print(markdown_table(table))
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
