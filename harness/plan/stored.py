"""`results/<sweep>/configurations.json`: each configuration of a sweep as the planner made it, stored when the
sweep starts, so that what depends only on the plan is never planned again (`moebench explain`, report.md's
"Why" section): its id, model, engine, tool, strategy, parameters, knob values, placement, devices, the exact
argument lists, the predicted memory per device and model buffers, and per test the performance model's
workload and predictions made at plan time (`harness.perf.configs.PredictedTest`, one for each test its tool's
rows will have: `planned_tests`), which the sweep's rows take their model columns from.

    {"format": 1, "configurations": {"<config id>": {..., "tests": {"tg128@d0": {...}}}}}

A sweep run again into the same folder (resumed, or `moebench tune`'s sweeps of different points) adds its
configurations to those already stored; the file is replaced atomically. A folder without the file (written
before it existed) is explained by planning it again from meta.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from harness.plan.planner import Configuration, status

CONFIGURATIONS_FILE = "configurations.json"
CONFIGURATIONS_FORMAT = 1   # 1: the first; a reader of an unknown format plans the sweep again


def key_of_test(kind: str, tokens: int, depth: int) -> str:
    """A test as the rows give it (pp or tg, its tokens, the depth in its `n_depth`)."""
    return f"{kind}{tokens}@d{depth}"


def configuration_record(conf: Configuration, commands: list[list[str]], tests: dict[str, dict]) -> dict:
    """What is stored of one configuration; `commands`: its argument lists (`harness.runner.commands`);
    `tests`: per `key_of_test`, the workload and predictions of the test (`PredictedTest.to_dict`)."""
    memory = conf.memory
    return {
        "id": conf.id, "status": status(conf), "error": conf.error,
        "model": conf.model.label, "model_file": str(conf.model.path), "model_identity": conf.model.identity,
        "engine": conf.engine.name, "engine_dialect": conf.engine.dialect, "engine_version": conf.engine.version,
        "tool": conf.tool, "strategy": conf.strategy, "params": conf.params, "knobs": asdict(conf.knobs),
        "threads": conf.threads, "placement": conf.placement.describe() if conf.placement else None,
        "deferred": bool(conf.placement and conf.placement.deferred),
        "device": conf.target.buffer_type if conf.target else None, "devices": conf.device_names,
        "args": conf.placement_args, "knob_args": conf.knob_args, "engine_args": conf.engine_args,
        "commands": commands,
        "memory": memory.to_dict() if memory else None,
        "predicted_vram_bytes_by_device": {conf.device_names.get(d, d): b for d, b in
                                           memory.vram_bytes_by_device.items()} if memory else None,
        "predicted_model_buffers": conf.predicted_buffers,
        "tests": tests,
    }


def read_configurations(folder: Path) -> dict[str, dict] | None:
    """The stored configurations by id, or None where the folder has none (or in a format this reader does not
    know: the caller plans again)."""
    path = Path(folder) / CONFIGURATIONS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or data.get("format") != CONFIGURATIONS_FORMAT:
        return None
    return dict(data.get("configurations", {}))


def write_configurations(folder: Path, records: list[dict]) -> Path:
    """Add `records` to the folder's stored configurations (a record of the same id replaces the old one), in
    one atomic replace."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = read_configurations(folder) or {}
    stored.update({record["id"]: record for record in records})
    path = folder / CONFIGURATIONS_FILE
    tmp = path.with_name(f".{CONFIGURATIONS_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump({"format": CONFIGURATIONS_FORMAT, "configurations": stored}, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path
