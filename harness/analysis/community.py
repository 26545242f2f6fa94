"""`community.csv`: a stable subset of a sweep's results for sharing, one row per configuration and test.

The columns (`COMMUNITY_COLUMNS`, stable across moebench versions; a change bumps `COMMUNITY_SCHEMA_VERSION`):
community_schema_version, schema_version (of the runs.csv it came from), host_cpu, host_cpu_cores,
host_ram_gib, gpu_name, gpu_vram_total_mib, gpu_pcie, engine, engine_dialect, engine_version, model,
model_arch, model_quant, model_size_bytes, tool, strategy, strategy_params, placement, test, kind, n_prompt,
n_gen, n_depth, concurrency, threads and the other engine knobs (ubatch, batch, threads_batch, flash_attn,
op_offload, load_mode, cache_type_k, cache_type_v; empty: the engine's default), processes (fresh engine
processes measured), n (samples of the interval: one per process with two or more processes, else the
repetitions), tps_mean, tps_ci_low, tps_ci_high (95%), cv_pct (stdev / mean × 100 of those samples), warnings
(the runner's stability warnings, "; "-joined), ttft_ms_mean, predicted_vram_bytes, vram_peak_mib,
pcie_mib_per_token, joules_per_token, moebench_version.

Version 3 added the engine knobs other than threads (a row per knob value: two values of a knob are two
configurations). Version 2 (processes as the unit of replication) added processes, cv_pct and warnings, and
has one row per (model, engine, tool, strategy, strategy_params, placement, test); version 1 had one per
(engine, tool, placement, test) and n counted repetitions.
"""

from __future__ import annotations

import pandas as pd

from harness import __version__

from harness.analysis.stats import GROUP

COMMUNITY_SCHEMA_VERSION = 3
COMMUNITY_COLUMNS = (
    "community_schema_version", "schema_version", "host_cpu", "host_cpu_cores", "host_ram_gib", "gpu_name",
    "gpu_vram_total_mib", "gpu_pcie", "engine", "engine_dialect", "engine_version", "model", "model_arch",
    "model_quant", "model_size_bytes", "tool", "strategy", "strategy_params", "placement", "test", "kind",
    "n_prompt", "n_gen", "n_depth", "concurrency", "threads", "ubatch", "batch", "threads_batch", "flash_attn",
    "op_offload", "load_mode", "cache_type_k", "cache_type_v", "processes", "n", "tps_mean", "tps_ci_low",
    "tps_ci_high", "cv_pct", "warnings", "ttft_ms_mean", "predicted_vram_bytes", "vram_peak_mib",
    "pcie_mib_per_token", "joules_per_token", "moebench_version",
)


def community_frame(df: pd.DataFrame, table: pd.DataFrame, moebench_version: str | None = None) -> pd.DataFrame:
    """`COMMUNITY_COLUMNS`, one row per configuration and test measured ok (a `summarize` row), the host,
    engine and model columns from its first ok row."""

    first = df[df["ok"]].drop_duplicates(GROUP)
    keep = [c for c in first.columns if c in GROUP or c not in table.columns]
    merged = table.merge(first[keep].drop(columns=["tps_ci_low", "tps_ci_high"], errors="ignore"), on=GROUP,
                         how="left")
    merged = merged.rename(columns={"ci_low": "tps_ci_low", "ci_high": "tps_ci_high"})
    merged["community_schema_version"] = COMMUNITY_SCHEMA_VERSION
    merged["moebench_version"] = moebench_version or __version__
    for col in COMMUNITY_COLUMNS:
        if col not in merged:
            merged[col] = None
    return merged[list(COMMUNITY_COLUMNS)]
