"""The parts of a results record (`harness.results.record.RunRecord`) that describe what ran: the configuration
(model, engine, placement, predicted memory per device, host), its telemetry (the time series file, the phase
windows, per-phase figures), time to first token, and the model columns (what the plan predicted of the row's
test, `harness.perf.configs.PredictedTest`, beside the engine's own graph splits)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping, Protocol

from harness.config import BenchSettings
from harness.hostinfo import host_fingerprint
from harness.perf.configs import PredictedTest
from harness.plan.planner import Configuration
from harness.plan.stored import key_of_test
from harness.tools.measurement import BenchTest
from harness.results.record import RunRecord, modelled_test
from harness.results.store import ResultsStore
from harness.telemetry import Sampler


class HasNameAndBench(Protocol):
    name: str
    bench: BenchSettings


def base_record(run: "HasNameAndBench", conf: Configuration) -> RunRecord:
    """The record of a configuration before it runs: what it is and what the plan predicted. `run`: the
    sweep's settings (`runner.sweep.RunSettings`: its name and bench settings)."""
    engine = conf.engine
    memory = conf.memory
    record = RunRecord(
        sweep=run.name, tool=conf.tool, strategy=conf.strategy or "", strategy_params=conf.params or "",
        placement=conf.placement.describe() if conf.placement else "",
        device="+".join(conf.target.buffer_types) if conf.target else "", repetitions=run.bench.repetitions,
        engine=engine.name, engine_dialect=engine.dialect, engine_version=engine.version,
        engine_build=engine.build_number, engine_commit=engine.commit,
        model=conf.model.label, model_file=str(conf.model.path), model_arch=conf.model.info.architecture,
        model_quant=next(iter(conf.model.info.quant_bytes), ""),  # the type holding the most bytes
        model_size_bytes=conf.model.info.file_size_bytes,
        predicted_vram_bytes=memory.vram_bytes if memory else None,
        predicted_ram_bytes=memory.ram_bytes if memory else None,
    ).update(threads=conf.threads, **conf.knobs.columns(), **host_fingerprint())
    if memory:
        record.device_bytes("predicted_vram_bytes", {conf.device_names.get(d, d): b
                                                     for d, b in memory.vram_bytes_by_device.items()})
    record.device_bytes("predicted_model_bytes", conf.predicted_buffers)
    if memory:
        record.device_bytes("predicted_kv_bytes", memory.kv_by_engine_device(conf.engine_device_names))
        record.device_bytes("predicted_compute_bytes", memory.compute_by_engine_device(conf.engine_device_names))
    return record


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
    windows = test.windows_mono
    if sampler is None or not windows:
        return {}
    offset = time.monotonic() - sampler.now()  # monotonic -> sampler time
    for start, end in windows:
        sampler.mark_phase(test.name, start - offset, end - offset, test.tokens / len(windows))
    return _rounded(sampler.summarize(test.name))


def _rounded(figures: dict) -> dict:
    """Floats to 3 decimals, also inside the per-GPU figures ({index: {figure: value}})."""
    return {k: round(v, 3) if isinstance(v, float) else _rounded(v) if isinstance(v, dict) else v
            for k, v in figures.items()}


def ttft_columns(test: BenchTest) -> dict:
    samples = test.ttft_ms
    if not samples:
        return {}
    return {"ttft_ms_mean": round(sum(samples) / len(samples), 3), "ttft_ms_samples": [round(s, 3) for s in samples]}


def planned_test(planned: Mapping[str, PredictedTest], test: BenchTest) -> PredictedTest | None:
    """What the plan predicted of a measured test (`planned`: the configuration's, by `key_of_test`), or None
    for a test the model does not predict (a combined prompt + generation test) or the plan has not (engine-fit,
    nothing placed)."""
    modelled = modelled_test(test.n_prompt, test.n_gen)
    return planned.get(key_of_test(*modelled, test.n_depth or 0)) if modelled else None


def model_columns(planned: PredictedTest | None, measured_tps: float | None, graph_splits: int | None) -> dict:
    """The row's model columns: the engine's graph splits (from its load report) and, where the plan predicted
    the test, the model's graph splits, the predicted tokens/s where calibrated, the generation roofline and the
    measured share of it."""
    out: dict = {"graph_splits": graph_splits}
    if planned is None:
        return out
    out["predicted_graph_splits"] = planned.predicted_graph_splits
    if planned.predicted_tps is not None:
        out[f"predicted_{planned.workload.test.kind}_tps"] = round(planned.predicted_tps, 3)
    if planned.roofline_tps:
        out["roofline_tg_tps"] = round(planned.roofline_tps, 3)
        if measured_tps:
            out["efficiency_pct"] = round(100 * measured_tps / planned.roofline_tps, 2)
    return out
