"""The parts of a results row that describe what ran: the configuration (model, engine, placement, predicted
memory, host), its telemetry (the time series file, the phase windows, per-phase figures) and time to first
token."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.config import BenchConfig
from harness.hostinfo import host_fingerprint
from harness.plan.planner import Configuration
from harness.tools.measurement import BenchTest
from harness.store import ResultsStore
from harness.telemetry import Sampler


def base_row(config: BenchConfig, conf: Configuration) -> dict:
    engine = conf.engine
    memory = conf.memory
    return {
        "sweep": config.name, "tool": conf.tool, "strategy": conf.strategy or "",
        "strategy_params": conf.params or "", "placement": conf.placement.describe() if conf.placement else "",
        "device": "+".join(conf.target.buffer_types) if conf.target else "", "repetitions": config.bench.repetitions,
        "engine": engine.name, "engine_dialect": engine.dialect, "engine_version": engine.version,
        "engine_build": engine.build_number, "engine_commit": engine.commit,
        "model": conf.model.label, "model_file": str(conf.model.path), "model_arch": conf.model.info.architecture,
        "model_quant": next(iter(conf.model.info.quant_bytes), ""),  # the type holding the most bytes
        "model_size_bytes": conf.model.path.stat().st_size, "threads": conf.threads, **conf.knobs.columns(),
        "predicted_vram_bytes": memory.vram_bytes if memory else None,
        "predicted_vram_bytes_by_device": {conf.device_names.get(d, d): b for d, b in
                                           memory.vram_bytes_by_device.items()} if memory else None,
        "predicted_ram_bytes": memory.ram_bytes if memory else None,
        "predicted_model_buffers": conf.predicted_buffers,
        "predicted_kv_buffers": memory.kv_by_engine_device(conf.engine_device_names) if memory else None,
        "predicted_compute_buffers": memory.compute_by_engine_device(conf.engine_device_names) if memory else None,
        **host_fingerprint(),
    }


def telemetry_file(store: ResultsStore, name: str, sampler: Sampler | None) -> dict:
    """Write the sampler's time series to `telemetry/<name>.csv.gz` and its phase windows beside it."""
    if sampler is None:
        return {}
    path = store.folder / "telemetry" / f"{name}.csv.gz"
    path.parent.mkdir(exist_ok=True)
    sampler.write_csv_gz(path)
    _write_phase_windows(path, sampler)
    return {"telemetry_file": str(path.relative_to(store.folder)), "telemetry_warnings": sampler.warnings or ""}


def _write_phase_windows(telemetry_path: Path, sampler: Sampler) -> None:
    """`<id>.phases.json` beside the time series: each test's windows in its time (`t_s`), for the timeline."""
    phases = {name: windows for name, (windows, _tokens) in sampler.phases.items()}
    tmp = telemetry_path.with_name(telemetry_path.name.replace(".csv.gz", ".phases.json.tmp"))
    tmp.write_text(json.dumps(phases))
    tmp.replace(telemetry_path.with_name(telemetry_path.name.replace(".csv.gz", ".phases.json")))


def phase_telemetry(sampler: Sampler | None, test: BenchTest) -> dict:
    """The test's own phase windows (process lifetime, or request timestamps) summarized from the samples; a
    test without windows of its own (sweep-bench) gets no per-phase figures."""
    windows = test.raw.get("windows_mono")
    if sampler is None or not windows:
        return {}
    offset = time.monotonic() - sampler.now()  # monotonic -> sampler time
    for start, end in windows:
        sampler.mark_phase(test.name, start - offset, end - offset, test.tokens / len(windows))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sampler.summarize(test.name).items()}


def ttft_columns(test: BenchTest) -> dict:
    samples = test.raw.get("ttft_ms")
    if not samples:
        return {}
    return {"ttft_ms_mean": round(sum(samples) / len(samples), 3), "ttft_ms_samples": [round(s, 3) for s in samples]}
