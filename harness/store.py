"""The results store: `runs.csv`, append-only, one complete row written and flushed at a time.

A row is written with a single write() of a whole line and fsync'd, so killing the harness at any moment
leaves either the whole row or none of it; a torn last line (a full disk, a power cut) is cut off when the
store is next opened, and only that line.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from harness.knobs import KNOB_COLUMNS
from harness.telemetry.attribution import TELEMETRY_COLUMNS

SCHEMA_VERSION = 2
"""1: one row per (configuration, test), its samples the repetitions of one process.
2: one row per (configuration, test, process): `process_index` says which fresh process (the unit of
replication); `tps_ci_low`/`tps_ci_high` the 95% interval over this configuration's processes so far (over the
repetitions while there is only one); `warnings` the stability checks; `sample_ms_mean`, `cpus`, `rpc_cpus`;
the engine knobs, one column each (`ubatch`, `batch`, `threads_batch`, `flash_attn`, `op_offload`,
`load_mode`, `cache_type_k`, `cache_type_v`: the configuration's value, empty where the engine's default was
left; `threads`: the count the engine ran with).
`graph_splits` the backend segments the engine logged; `predicted_graph_splits`, `predicted_pp_tps` /
`predicted_tg_tps` (the row's own test), `roofline_tg_tps` and `efficiency_pct` (measured / roofline) from the
performance model where the engine and device are calibrated (`harness.perf`), else empty.
`warnings`: free text joined with "; " until issue 18, since then a JSON list of {kind, message, remedy}
(`harness.warnings.encode_warnings`); `decode_warnings` reads both, telling them apart by the leading "[".
Version-1 rows read as process 0 with no interval (and no knob columns but `threads`)."""

COLUMNS = (
    "schema_version", "run_id", "config_id", "process_index", "sweep", "status", "reason", "warnings", "started_at", "finished_at", "duration_s",
    "tool", "strategy", "strategy_params", "placement", "device", "test", "n_prompt", "n_gen", "n_depth",
    "repetitions",
    "tps_mean", "tps_stddev", "tps_samples", "tps_ci_low", "tps_ci_high", "sample_ms_mean",
    "ttft_ms_mean", "ttft_ms_samples",
    "engine", "engine_dialect", "engine_version", "engine_build", "engine_commit",
    "model", "model_file", "model_arch", "model_quant", "model_size_bytes", "model_n_params",
    "predicted_vram_bytes", "predicted_vram_bytes_by_device", "predicted_ram_bytes", "predicted_model_buffers",
    "actual_model_buffers", "predicted_kv_buffers", "actual_kv_buffers", "predicted_compute_buffers",
    "actual_compute_buffers",
    "graph_splits", "predicted_graph_splits", "predicted_pp_tps", "predicted_tg_tps", "roofline_tg_tps",
    "efficiency_pct",
    *TELEMETRY_COLUMNS, "telemetry_file", "telemetry_warnings",
    *KNOB_COLUMNS, "cpus", "rpc_cpus", "command", "log_file",
    "host_name", "host_cpu", "host_cpu_cores", "host_cpu_threads", "host_ram_gib", "host_os",
    "gpu_name", "gpu_vram_total_mib", "gpu_driver", "gpu_pcie",
)


class ResultsStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.csv_path = self.folder / "runs.csv"
        self.logs = self.folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._add_new_columns()

    def _repair(self) -> None:
        """Cut a torn last line (a row not ending in a newline); never touches complete rows."""
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            return
        with open(self.csv_path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            fh.truncate(data.rfind(b"\n") + 1)

    def _add_new_columns(self) -> None:
        """A folder written before columns were added (resume): rewrite it once with today's header, its rows
        unchanged and the new columns empty, so that appended rows line up (written whole, then renamed)."""
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            return
        with open(self.csv_path, newline="") as fh:
            header = next(csv.reader(fh), [])
            if header == list(COLUMNS) or not set(header) <= set(COLUMNS):
                return
            fh.seek(0)
            rows = list(csv.DictReader(fh))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = self.csv_path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.csv_path)

    def append(self, *rows: dict) -> None:
        """Append rows in one write() and fsync: the rows of one process (llama-bench's pp and tg) land
        together or not at all, so a resumed sweep never finds a process half recorded."""
        for row in rows:
            unknown = set(row) - set(COLUMNS)
            if unknown:
                raise ValueError(f"not in the results schema: {sorted(unknown)}")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in {"schema_version": SCHEMA_VERSION, **row}.items()})
        fd = os.open(self.csv_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def rows(self) -> list[dict]:
        """Every row written so far, as the CSV holds it (strings)."""
        if not self.csv_path.exists():
            return []
        with open(self.csv_path, newline="") as fh:
            return list(csv.DictReader(fh))

    def write_meta(self, meta: dict) -> None:
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        tmp.replace(self.folder / "meta.json")


def _cell(value):
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value
