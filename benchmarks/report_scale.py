"""How `moebench report` scales: writes a synthetic schema-2 results folder (default 5,000 rows: parametric
strategies × parameters × engine knobs × 2 tests × 2 processes, with the realistic columns of a real sweep,
telemetry files included), then times `write_report` with its plots and prints the seconds, the size of
report.md in KB and the number of bars in the largest bar chart.

    .venv/bin/python benchmarks/report_scale.py [--rows 5000] [--keep DIR] [--no-plots]

The synthetic folder (`write_synthetic`) is also what tests/test_report_scale.py reports on, at a small size.
Run it alone: anything else on the machine is in the seconds it prints.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from harness.results.record import COLUMNS  # noqa: E402

KNOB_COLUMNS = ("ubatch", "batch", "threads", "threads_batch", "flash_attn", "op_offload", "load_mode",
                "cache_type_k", "cache_type_v")
# strategy -> (parameter name, values); the tiny model has 8 expert layers
PARAMETRIC = {"first-n-experts": ("n", range(0, 9)), "last-n-experts": ("n", range(0, 9)),
              "gpu-layers": ("k", range(0, 10)), "last-n-layers-cpu": ("n", range(0, 9))}
BASELINES = {"all-gpu": {}, "cpu-moe": {}, "engine-fit": {"margin_mib": 1024}}
# knob -> values ("" = the engine's default); their product times the placements sets the folder's size
KNOB_GRID = {"ubatch": ["", "512", "1024", "2048"], "flash_attn": ["", "on"], "cache_type_k": ["", "q8_0"],
             "load_mode": ["", "mlock"]}
TESTS = ("pp512", "tg128")
HOST = {"host_name": "bench", "host_cpu": "AMD EPYC 9454P", "host_cpu_cores": 48, "host_cpu_threads": 96,
        "host_ram_gib": 384, "host_os": "Linux 6.8", "gpu_name": "NVIDIA H200", "gpu_vram_total_mib": 143771,
        "gpu_driver": "570.124", "gpu_pcie": "Gen5 x16"}


def placements() -> list[tuple[str, dict]]:
    """(strategy, parameters) of every placement: the baselines, then each parametric strategy's values."""
    out = [(name, params) for name, params in BASELINES.items()]
    for name, (param, values) in PARAMETRIC.items():
        out += [(name, {param: v}) for v in values]
    return out


def configurations(n_configs: int, seed: int = 0) -> list[tuple[str, dict, dict]]:
    """`n_configs` (strategy, parameters, knobs) from the full product of placements and `KNOB_GRID`, the
    whole product when it is not larger, else an even spread over it (a seeded sample keeps every baseline)."""
    product = [(s, p, dict(zip(KNOB_GRID, values))) for (s, p), values
               in itertools.product(placements(), itertools.product(*KNOB_GRID.values()))]
    if n_configs >= len(product):
        return product
    rng = random.Random(seed)
    keep = [c for c in product if c[0] in BASELINES and not any(c[2].values())]
    rest = [c for c in product if c not in keep]
    return keep + rng.sample(rest, n_configs - len(keep))


def _speed(strategy: str, params: dict, knobs: dict, test: str) -> float:
    """A plausible mean tokens/s: the more of the experts on the CPU, the slower; ubatch and flash attention
    help prompt processing."""
    cpu_share = {"all-gpu": 0.0, "engine-fit": 0.05, "cpu-moe": 1.0}.get(strategy)
    if cpu_share is None:
        value = next(iter(params.values()))
        cpu_share = value / 9 if strategy == "gpu-layers" else value / 8
        cpu_share = 1 - cpu_share if strategy == "gpu-layers" else cpu_share
    if test.startswith("pp"):
        base = 2400 / (1 + 3 * cpu_share)
        base *= {"": 1.0, "512": 1.0, "1024": 1.12, "2048": 1.2}[knobs.get("ubatch", "")]
        base *= 1.05 if knobs.get("flash_attn") == "on" else 1.0
    else:
        base = 90 / (1 + 2.5 * cpu_share)
        base *= 0.97 if knobs.get("cache_type_k") == "q8_0" else 1.0
    return base * (1.01 if knobs.get("load_mode") == "mlock" else 1.0)


def write_synthetic(folder: Path, rows: int = 5000, processes: int = 2, tools=("llama-bench",),
                    model_file: str = "", seed: int = 0, telemetry: bool = True) -> Path:
    """A schema-2 runs.csv of about `rows` rows (whole configurations: configurations × tests × processes ×
    tools) with meta.json and, when `telemetry`, one small telemetry series per configuration and process.
    Columns: the store's, plus the knob columns. Returns the folder."""
    folder = Path(folder)
    (folder / "telemetry").mkdir(parents=True, exist_ok=True)
    n_configs = max(1, math.ceil(rows / (len(TESTS) * processes * len(tools))))
    rng = random.Random(seed)
    fieldnames = list(COLUMNS) + [k for k in KNOB_COLUMNS if k not in COLUMNS]
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, restval="", lineterminator="\n")
        writer.writeheader()
        for c_index, (strategy, params, knobs) in enumerate(configurations(n_configs, seed)):
            label = f"{strategy}({', '.join(f'{k}={v}' for k, v in params.items())})" if params else strategy
            for tool in tools:
                config_id = f"{c_index:05d}{tool[-5:]}"
                for process in range(processes):
                    tele = f"telemetry/{config_id}-{process}.csv.gz"
                    if telemetry:
                        _write_telemetry(folder / tele, rng)
                    for test in TESTS:
                        mean = _speed(strategy, params, knobs, test) * rng.gauss(1, 0.02)
                        samples = [round(mean * rng.gauss(1, 0.01), 3) for _ in range(3)]
                        cpu_share = 0.5
                        writer.writerow({
                            "schema_version": 2, "run_id": f"{config_id}-{process}-{test}", "config_id": config_id,
                            "process_index": process, "sweep": "scale", "status": "ok",
                            "warnings": "cv 11% >= 10% across 2 processes" if rng.random() < 0.03 else "",
                            "started_at": "2026-01-01T00:00:00+0000", "finished_at": "2026-01-01T00:00:05+0000",
                            "duration_s": 5.0, "tool": tool, "strategy": strategy,
                            "strategy_params": json.dumps(params) if params else "", "placement": label,
                            "device": "CUDA0", "test": test, "n_prompt": 512 if test.startswith("pp") else 0,
                            "n_gen": 128 if test.startswith("tg") else 0, "n_depth": 0, "repetitions": 3,
                            "tps_mean": round(sum(samples) / 3, 3), "tps_stddev": 0.5,
                            "tps_samples": json.dumps(samples), "sample_ms_mean": 250.0,
                            "engine": "mainline-11434.0.0-cuda90", "engine_dialect": "mainline",
                            "engine_version": "11434.0.0", "engine_build": 11434, "model": "synth:tiny",
                            "model_file": model_file, "model_arch": "qwen3moe", "model_quant": "Q8_0",
                            "model_size_bytes": 16363936, "model_n_params": 15242496,
                            "predicted_vram_bytes": int(16e6 * (1 - cpu_share)) + rng.randrange(1 << 20),
                            "predicted_ram_bytes": int(16e6 * cpu_share), "vram_peak_mib": 30 + rng.random(),
                            "pcie_mib_per_token": rng.random() * 5, "rss_peak_mib": 120.0, "cpu_pct_mean": 180.0,
                            "telemetry_samples": 50, "telemetry_file": tele if telemetry else "",
                            "threads": "", "cpus": "0-47", "command": "llama-bench -m model.gguf",
                            **HOST, **knobs})
    (folder / "meta.json").write_text(json.dumps({"config": {"name": "scale"}, "moebench_version": "bench"}))
    return folder


def _write_telemetry(path: Path, rng: random.Random) -> None:
    lines = ["t_s,rss_mib,cpu_pct,vram_used_mib,gpu_util_pct"]
    lines += [f"{i / 10:.1f},{100 + i},{150 + rng.random() * 50:.1f},{2000 + i},{rng.random() * 100:.1f}"
              for i in range(50)]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    path.with_name(path.name.replace(".csv.gz", ".phases.json")).write_text(
        json.dumps({"pp512": [[0.5, 2.0]], "tg128": [[2.5, 4.5]]}))


def largest_bar_chart(table) -> int:
    """The number of bars in the report's throughput chart's fullest panel."""
    import matplotlib.pyplot as plt

    from harness.analysis.plots import plot_throughput

    fig = plot_throughput(table)
    if fig is None:
        return 0
    bars = max(len(ax.patches) for ax in fig.axes)
    plt.close(fig)
    return bars


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="write the folder here and keep it")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--model", default=None, help="model file for the placement maps (default: the "
                                                       "cached tiny synthetic model when present)")
    args = parser.parse_args()
    from harness.analysis.report import write_report

    model = args.model
    if model is None:
        from harness.models.synth import synthetic_model_path

        tiny = synthetic_model_path("tiny")
        model = str(tiny) if tiny.exists() else ""
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "scale"
        t0 = time.perf_counter()
        write_synthetic(folder, args.rows, args.processes, model_file=model)
        written = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = write_report(folder, with_plots=not args.no_plots)
        seconds = time.perf_counter() - t0
        size_kb = result["report"].stat().st_size / 1024
        bars = largest_bar_chart(result["table"])
        rows = sum(1 for _ in open(folder / "runs.csv")) - 1
        print(f"rows: {rows} ({result['table']['config_key'].nunique()} configurations), written in {written:.1f} s"
              f"{'' if model else ' (no model file: no placement map)'}")
        print(f"write_report{'' if not args.no_plots else ' (no plots)'}: {seconds:.1f} s")
        print(f"report.md: {size_kb:.1f} KB")
        print(f"largest bar chart: {bars} bars")
        print(f"plots: {len(result['plots'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
