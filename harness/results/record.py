"""What a results row is: `RunRecord` (one row of runs.csv: one measured test of one process, or a process's
failed / skipped row) with its `DeviceFigures` (its rows of devices.csv: one per device), the columns in their
order (`COLUMNS`, `DEVICE_COLUMNS`), how a cell is written (`encode_cell`) and read back (`parse_samples`), and
a test's kind (`test_name`, `parse_test`, `test_kind`, `modelled_test`: the one place pp / tg / depth are told
apart).

The runner fills a record (`harness.runner.rows.base_record`, then `update` with the process's and the test's
figures); the store writes it (`harness.results.store`); the reader reads every version back
(`harness.results.reader`, the format history in `harness.results.schema`).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from harness.knobs import KNOB_COLUMNS
from harness.telemetry.attribution import PER_GPU, TELEMETRY_COLUMNS

HOST_COLUMNS = ("host_name", "host_cpu", "host_cpu_cores", "host_cpu_threads", "host_ram_gib", "host_os",
                "gpu_name", "gpu_vram_total_mib", "gpu_driver", "gpu_pcie")
"""The host fingerprint's columns (`harness.hostinfo.host_fingerprint`)."""


# -- a test's kind ------------------------------------------------------------------------------------------------

_TEST = re.compile(r"^(?P<kind>pp|tg|pp(?P<p>\d+)\+tg)(?P<size>\d+)(?:x(?P<conc>\d+))?(?:@d(?P<depth>\d+))?$")


def test_name(n_prompt: int, n_gen: int, n_depth: int = 0, concurrency: int = 1) -> str:
    """A test's name in runs.csv: `pp512`, `tg128`, `pp512+tg128` (both), `tg16x3` (3 concurrent requests,
    their aggregate), `pp512@d1024` (over a cache already holding 1024 tokens)."""
    name = f"pp{n_prompt}" if n_gen == 0 else f"tg{n_gen}"
    if n_prompt and n_gen:
        name = f"pp{n_prompt}+tg{n_gen}"
    if concurrency > 1:
        name += f"x{concurrency}"
    return f"{name}@d{n_depth}" if n_depth else name


def parse_test(test: str) -> dict:
    """`pp64` -> kind pp, size 64; `tg16x3@d128` -> kind tg, size 16, concurrency 3, depth 128; `pp64+tg16` ->
    kind pp+tg, size 16. An unrecognised name gives kind None (the row is kept, just not classified)."""
    match = _TEST.match(str(test).strip())
    if not match:
        return {"kind": None, "size": None, "depth": 0, "concurrency": 1}
    kind = "pp+tg" if match["p"] else match["kind"]
    return {"kind": kind, "size": int(match["size"]), "depth": int(match["depth"] or 0),
            "concurrency": int(match["conc"] or 1)}


def _count(value) -> int:
    """A token count from a record or a frame's cell (None, NaN and "" are 0)."""
    try:
        return int(value) if value == value and value not in (None, "") else 0
    except (TypeError, ValueError):
        return 0


def test_kind(n_prompt, n_gen) -> str | None:
    """"pp" (prompt only), "tg" (generation only), "pp+tg" (both, one combined figure), None (neither)."""
    prompt, gen = _count(n_prompt), _count(n_gen)
    if prompt and gen:
        return "pp+tg"
    return "pp" if prompt else "tg" if gen else None


def modelled_test(n_prompt, n_gen) -> tuple[str, int] | None:
    """(kind, tokens) of a test the performance model predicts: a prompt ("pp", prompt tokens) or a generation
    ("tg", generated tokens); None for a combined or an empty test."""
    kind = test_kind(n_prompt, n_gen)
    if kind == "pp":
        return kind, _count(n_prompt)
    if kind == "tg":
        return kind, _count(n_gen)
    return None


# -- cells --------------------------------------------------------------------------------------------------------

def encode_cell(value):
    """A value as its CSV cell: lists and dicts as JSON, None as empty, the rest as it is."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return "" if value is None else value


def parse_samples(cell) -> list[float]:
    """A `tps_samples` (or `ttft_ms_samples`) cell (a JSON list as written; a single number in the text is one
    sample) as floats; [] when empty or unreadable."""
    if not isinstance(cell, str) or not cell.strip():
        return []
    try:
        values = json.loads(cell)
    except ValueError:
        return []
    if not isinstance(values, list):
        values = [values]
    return [float(v) for v in values if v is not None]


# -- the device table ---------------------------------------------------------------------------------------------

@dataclass
class DeviceFigures:
    """One device's figures of one run: a row of devices.csv. `device`: the engine's name for it (`CUDA0`,
    `RPC0[127.0.0.1:50052]`, `CPU`: the buffers and predictions), or `gpu<i>` for NVML's GPU i (the telemetry,
    `gpu_index` i). A kind of buffer more is a field more (and its column: the header widens on resume)."""

    device: str
    gpu_index: int | None = None
    vram_peak_mib: float | None = None        # the phase's peak of this GPU's used memory
    gpu_util_pct_mean: float | None = None
    pcie_rx_mib_s_mean: float | None = None
    pcie_tx_mib_s_mean: float | None = None
    predicted_vram_bytes: int | None = None   # the planner's prediction for this accelerator (weights, KV, compute)
    predicted_model_bytes: int | None = None  # the model buffer the engine should report here
    actual_model_bytes: int | None = None     # the model buffer the engine reported (its load report)
    predicted_kv_bytes: int | None = None     # the KV cache (and recurrent state) the engine should report here
    actual_kv_bytes: int | None = None        # its `KV buffer size` (+ mainline's `RS buffer size`) lines
    predicted_compute_bytes: int | None = None  # the compute buffer the engine should reserve here
    actual_compute_bytes: int | None = None   # its `compute buffer size` line


DEVICE_FIGURES = tuple(f.name for f in fields(DeviceFigures))
DEVICE_COLUMNS = ("schema_version", "run_id", *DEVICE_FIGURES)
BYTES_BY_DEVICE = tuple(name for name in DEVICE_FIGURES if name.endswith("_bytes"))
"""The figures that come as a {device: bytes} mapping (`RunRecord.device_bytes`): every `*_bytes` field, so a
buffer kind more (`actual_kv_bytes`, `actual_compute_bytes`) is one field of `DeviceFigures` and one
`device_bytes` call in the runner."""


# -- the results row ----------------------------------------------------------------------------------------------

def _part(columns: tuple[str, ...]):
    return field(default_factory=dict, metadata={"columns": tuple(columns)})


@dataclass
class RunRecord:
    """One row of runs.csv. The fields are the columns, in order, but for three groups written by their own
    modules: `telemetry` (`harness.telemetry.attribution.TELEMETRY_COLUMNS`), `knobs`
    (`harness.knobs.KNOB_COLUMNS`: the configuration's value, empty for the engine's default; `threads` the count
    the engine ran with) and `host` (`HOST_COLUMNS`). `devices`: the per-device figures, devices.csv."""

    run_id: str = ""
    config_id: str = ""
    process_index: int | None = None
    sweep: str = ""
    status: str = ""
    reason: str = ""
    warnings: str = ""                       # harness.warnings.encode_warnings
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    tool: str = ""
    strategy: str = ""
    strategy_params: Any = ""
    placement: str = ""
    device: str = ""                         # the accelerators' buffer types, "+"-joined
    test: str = ""                           # test_name
    n_prompt: int | None = None
    n_gen: int | None = None
    n_depth: int | None = None
    repetitions: int | None = None
    tps_mean: float | None = None
    tps_stddev: float | None = None
    tps_samples: list | None = None
    tps_ci_low: float | None = None
    tps_ci_high: float | None = None
    sample_ms_mean: float | None = None
    ttft_ms_mean: float | None = None
    ttft_ms_samples: list | None = None
    engine: str = ""
    engine_dialect: str = ""
    engine_version: str = ""
    engine_build: Any = None
    engine_commit: Any = None
    model: str = ""
    model_file: str = ""
    model_arch: str = ""
    model_quant: str = ""
    model_size_bytes: int | None = None
    model_n_params: int | None = None
    predicted_vram_bytes: int | None = None  # the fullest accelerator's (each device's: devices.csv)
    predicted_ram_bytes: int | None = None
    graph_splits: int | None = None
    predicted_graph_splits: int | None = None
    predicted_pp_tps: float | None = None
    predicted_tg_tps: float | None = None
    roofline_tg_tps: float | None = None
    efficiency_pct: float | None = None
    telemetry: dict = _part(TELEMETRY_COLUMNS)
    telemetry_file: str | None = None
    telemetry_warnings: str | None = None
    knobs: dict = _part(KNOB_COLUMNS)
    cpus: str | None = None
    rpc_cpus: str | None = None
    command: list | None = None
    log_file: str | None = None
    host: dict = _part(HOST_COLUMNS)
    devices: dict = field(default_factory=dict, metadata={"table": "devices"})  # device -> DeviceFigures

    def update(self, **columns) -> "RunRecord":
        """Set columns by name (a group's column goes to its group; `per_gpu`, a phase summary's GPUs, to the
        devices); an unknown name is a ValueError. Returns the record."""
        unknown = sorted(set(columns) - _ACCEPTED)
        if unknown:
            raise ValueError(f"not in the results schema: {unknown}")
        for name, value in columns.items():
            if name == PER_GPU:
                self.gpu_figures(value or {})
            elif name in _GROUP_OF:
                getattr(self, _GROUP_OF[name])[name] = value
            else:
                setattr(self, name, value)
        return self

    def updated(self, **columns) -> "RunRecord":
        """A copy with these columns set (the process's record, then one per test)."""
        return copy.deepcopy(self).update(**columns)

    def _device(self, name: str) -> DeviceFigures:
        return self.devices.setdefault(name, DeviceFigures(name))

    def device_bytes(self, figure: str, by_device: Mapping[str, int] | None) -> None:
        """One of BYTES_BY_DEVICE for each device of {device: bytes} (None: nothing known)."""
        if figure not in BYTES_BY_DEVICE:
            raise ValueError(f"not a per-device bytes figure: {figure}")
        for name, value in (by_device or {}).items():
            setattr(self._device(str(name)), figure, value)

    def gpu_figures(self, per_gpu: Mapping[int, Mapping[str, float | None]]) -> None:
        """The telemetry's figures of each NVML GPU (`harness.telemetry.per_gpu`) as device `gpu<i>`."""
        for index, figures in per_gpu.items():
            device = self._device(f"gpu{index}")
            device.gpu_index = int(index)
            for name, value in figures.items():
                setattr(device, name, value)

    def columns(self) -> dict:
        """The runs.csv cells, every column of COLUMNS but `schema_version`, encoded."""
        out = {}
        for f in fields(self):
            if "table" in f.metadata:
                continue
            if "columns" in f.metadata:
                part = getattr(self, f.name)
                out.update({c: encode_cell(part.get(c)) for c in f.metadata["columns"]})
            else:
                out[f.name] = encode_cell(getattr(self, f.name))
        return out

    def device_rows(self) -> list[dict]:
        """The devices.csv cells of this run, one dict per device (GPUs by index, then the others by name)."""
        order = sorted(self.devices.values(), key=lambda d: (d.gpu_index is None, d.gpu_index or 0, d.device))
        return [{"run_id": self.run_id, **{k: encode_cell(getattr(d, k)) for k in DEVICE_FIGURES}} for d in order]

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> "RunRecord":
        """A record from column values (what a test or an old writer had as a dict); unknown names refused."""
        return cls().update(**{k: v for k, v in columns.items() if k != "schema_version"})


def _columns() -> tuple[str, ...]:
    out = ["schema_version"]
    for f in fields(RunRecord):
        if "table" not in f.metadata:
            out.extend(f.metadata.get("columns", (f.name,)))
    return tuple(out)


COLUMNS = _columns()
"""runs.csv's columns in their order (`harness.results.schema` says what each version added)."""
_GROUP_OF = {c: f.name for f in fields(RunRecord) for c in f.metadata.get("columns", ())}
_ACCEPTED = (set(COLUMNS) - {"schema_version"} - {f.name for f in fields(RunRecord) if f.metadata}) | {PER_GPU}
