"""The results folder's format, version by version, and the loaders that read each version into today's shape.

SCHEMA_VERSION is written into every row of runs.csv and devices.csv (`schema_version`); a file may hold rows
of several versions (a folder resumed by a newer moebench: its header is widened, its old rows kept as they
are). Every version ever written loads; an unknown one is a one-line `UserError`.

Version 1 (until the process became the unit of replication): one row per (configuration, test), its samples
  the repetitions of one process.

Version 2: one row per (configuration, test, process). `process_index` says which fresh process;
  `tps_ci_low` / `tps_ci_high` the 95% interval over this configuration's processes so far (over the
  repetitions while there is only one); `warnings` the stability checks; `sample_ms_mean`, `cpus`, `rpc_cpus`.
  Added later within version 2, without a bump (so a version-2 file may lack any of them): the engine knobs, one
  column each (`ubatch`, `batch`, `threads_batch`, `flash_attn`, `op_offload`, `load_mode`, `cache_type_k`,
  `cache_type_v`: the configuration's value, empty where the engine's default was left; `threads`: the count
  the engine ran with); the model columns (`graph_splits`, `predicted_graph_splits`, `predicted_pp_tps` /
  `predicted_tg_tps`, `roofline_tg_tps`, `efficiency_pct`); `other_cpu_pct_mean`, `swap_io_pages_s_peak`,
  `gpu_throttle_reasons`; `predicted_vram_bytes_by_device`; the per-GPU telemetry `vram_peak_mib_gpu<i>`,
  `gpu_util_pct_mean_gpu<i>`, `pcie_rx_mib_s_mean_gpu<i>`, `pcie_tx_mib_s_mean_gpu<i>` for GPUs 0..7; and
  `warnings` became a JSON list of {kind, message, remedy} (free text joined with "; " before:
  `harness.warnings.decode_warnings` reads both).

Version 3 (issue 18): the per-device figures left runs.csv for devices.csv beside it, one row per (run_id,
  device) (`harness.results.record.DeviceFigures`): the 32 `*_gpu0` ... `*_gpu7` columns became the rows of
  devices `gpu<i>` (every GPU, however many), and the JSON cells `predicted_vram_bytes_by_device`,
  `predicted_model_buffers` and `actual_model_buffers` ({device: bytes}) the columns `predicted_vram_bytes`,
  `predicted_model_bytes` and `actual_model_bytes` of each device's row. runs.csv keeps the aggregates
  (`vram_peak_mib`: the fullest GPU, `predicted_vram_bytes`: the fullest accelerator).
  Added later within version 3, without a bump (a version-3 file may lack them): the knob columns `mla` (ik's
  MLA mode), `swa_full` and `attn_max_batch_mib` (ik's `-amb`), empty where the engine's default was left.

Loading: `LOADERS[v]` brings a frame of version v to version v + 1; `upgrade` runs them in turn. They work on
columns (a column absent is left absent, a cell empty is empty), so one frame may mix versions.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.errors import UserError
from harness.results.record import DEVICE_COLUMNS

SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3})

# columns version 2 added, and what a version-1 row reads as when its file lacks them
V2_NEW_COLUMNS = {"process_index": 0, "warnings": "", "tps_ci_low": None, "tps_ci_high": None,
                  "sample_ms_mean": None, "cpus": None, "rpc_cpus": None}
# version 2's per-GPU columns (NVML GPUs 0..7), by the device figure each became
V2_GPUS = 8
V2_GPU_FIGURES = ("vram_peak_mib", "gpu_util_pct_mean", "pcie_rx_mib_s_mean", "pcie_tx_mib_s_mean")
V2_GPU_COLUMNS = tuple(f"{figure}_gpu{i}" for i in range(V2_GPUS) for figure in V2_GPU_FIGURES)
# version 2's JSON cells {device: bytes}, by the device figure each became
V2_BYTES_CELLS = {"predicted_vram_bytes_by_device": "predicted_vram_bytes",
                  "predicted_model_buffers": "predicted_model_bytes", "actual_model_buffers": "actual_model_bytes"}
V3_REMOVED = (*V2_GPU_COLUMNS, *V2_BYTES_CELLS)


def check_versions(frame: pd.DataFrame, path) -> None:
    """Every row's `schema_version` one this moebench reads, else one line naming the file and the version."""
    if "schema_version" not in frame.columns:
        raise UserError(f"{path} has no schema_version column (not a moebench {path.name})")
    numbers = pd.to_numeric(frame["schema_version"], errors="coerce")
    bad = numbers.isna()
    unknown = set(numbers.dropna().astype(int)) - SUPPORTED_SCHEMA_VERSIONS
    if unknown or bad.any():
        what = sorted(unknown) or sorted(set(frame.loc[bad, "schema_version"].astype(str)))
        raise UserError(f"{path}: unknown schema version {', '.join(map(str, what))}; this moebench reads "
                        f"{', '.join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))} (upgrade moebench)")


def _v1_to_v2(runs: pd.DataFrame, devices: list[dict]) -> pd.DataFrame:
    """Version 1 rows are process 0, without warnings, interval or CPU sets."""
    for col, default in V2_NEW_COLUMNS.items():
        if col not in runs:
            runs[col] = default
    return runs


def _v2_to_v3(runs: pd.DataFrame, devices: list[dict]) -> pd.DataFrame:
    """The per-GPU columns and the {device: bytes} cells become device rows (appended to `devices`) and leave
    the runs frame."""
    present = [c for c in V3_REMOVED if c in runs.columns]
    if not present:
        return runs
    found: dict[tuple[str, str], dict] = {}
    run_ids = runs["run_id"].astype(str) if "run_id" in runs else pd.Series("", index=runs.index)
    versions = runs["schema_version"]
    for i in range(V2_GPUS):
        cols = [f"{figure}_gpu{i}" for figure in V2_GPU_FIGURES if f"{figure}_gpu{i}" in runs.columns]
        if not cols:
            continue
        part = runs[cols].apply(pd.to_numeric, errors="coerce")
        for idx in part.index[part.notna().any(axis=1)]:
            row = found.setdefault((run_ids[idx], f"gpu{i}"), _device_row(versions[idx], run_ids[idx], f"gpu{i}"))
            row["gpu_index"] = i
            for col in cols:
                value = part.at[idx, col]
                row[col.rsplit("_gpu", 1)[0]] = None if pd.isna(value) else float(value)
    for cell, figure in V2_BYTES_CELLS.items():
        if cell not in runs.columns:
            continue
        for idx, text in runs[cell].items():
            for device, value in _bytes_by_device(text).items():
                row = found.setdefault((run_ids[idx], device), _device_row(versions[idx], run_ids[idx], device))
                row[figure] = value
    devices.extend(found.values())
    return runs.drop(columns=present)


def _device_row(version, run_id: str, device: str) -> dict:
    return {**dict.fromkeys(DEVICE_COLUMNS), "schema_version": version, "run_id": run_id, "device": device}


def _bytes_by_device(text) -> dict[str, int]:
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


LOADERS = {1: _v1_to_v2, 2: _v2_to_v3}
"""version -> the loader that brings it to the next version (the last version has none)."""


def upgrade(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """A runs frame of any known versions in today's shape, and the device rows its old columns held."""
    devices: list[dict] = []
    for version in sorted(LOADERS):
        runs = LOADERS[version](runs, devices)
    return runs, devices
