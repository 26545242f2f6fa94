"""Run a bench.yaml: every model x engine x tool, one supervised engine process per configuration, one row
per measured test appended to the results store. A failed configuration becomes a failed row with the reason
and the tail of its log; the sweep goes on."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import __version__, procs
from harness.config import BenchConfig, ModelSpec
from harness.engines.discover import Engine, find_engine
from harness.hostinfo import host_fingerprint
from harness.runner.llama_bench import BenchOutputError, bench_argv, parse_bench_json
from harness.store import ResultsStore


@dataclass
class ResolvedModel:
    label: str
    path: Path
    identity: str          # what makes two runs' models the same model
    arch: str | None
    size_bytes: int
    n_params: int | None


def resolve_model(spec: ModelSpec, config: BenchConfig) -> ResolvedModel:
    from harness.models import inspect_model, synthetic_model

    if spec.synth:
        path = synthetic_model(spec.synth, seed=spec.seed)
        identity = f"synth:{spec.synth}:seed{spec.seed}"
    else:
        path = config.resolve(spec.path).resolve()
        with open(path, "rb") as fh:
            head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
        identity = f"file:{path.name}:{path.stat().st_size}:{head}"
    info = inspect_model(path)
    return ResolvedModel(spec.label, path, identity, info.architecture, path.stat().st_size,
                         getattr(info, "n_params", None))


def run_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _engine_columns(engine: Engine) -> dict:
    return {"engine": engine.name, "engine_dialect": engine.dialect, "engine_version": engine.version,
            "engine_build": engine.build_number, "engine_commit": engine.commit}


def run_sweep(config: BenchConfig, out_dir: Path, report: Callable[[str], None] = print) -> Path:
    """Run every configuration of `config`; return the sweep's results folder."""
    folder = out_dir / config.name
    store = ResultsStore(folder)
    engines = [find_engine(e.name, config.engine_paths()) for e in config.engines]
    models = [resolve_model(m, config) for m in config.models]
    store.write_meta({
        "moebench_version": __version__, "config": config.model_dump(mode="json"),
        "config_file": str(config.source_path), "host": host_fingerprint(), "python": platform.python_version(),
        "engines": [e.describe() for e in engines], "started_at": _now(),
    })
    for model in models:
        for engine in engines:
            for tool in config.tools:
                _run_llama_bench(config, store, engine, model, report)
    return folder


def _run_llama_bench(config: BenchConfig, store: ResultsStore, engine: Engine, model: ResolvedModel,
                     report: Callable[[str], None]) -> None:
    settings = config.bench
    argv = bench_argv(engine.tool("llama-bench"), model.path, settings, engine.dialect)
    rid = run_id(model.identity, engine.name, engine.version, "llama-bench", argv[3:])
    log_path = store.logs / f"{rid}.log"
    stdout_path = store.logs / f"{rid}.json"
    report(f"llama-bench  {engine.name}  {model.label}")
    started = _now()
    result = procs.run(argv, timeout_s=config.timeouts.run_s, log_path=log_path, stdout_path=stdout_path,
                       cwd=store.logs)
    base = {
        "sweep": config.name, "started_at": started, "finished_at": _now(),
        "duration_s": round(result.duration_s, 3), "tool": "llama-bench", "repetitions": settings.repetitions,
        **_engine_columns(engine), "model": model.label, "model_file": str(model.path), "model_arch": model.arch,
        "model_size_bytes": model.size_bytes, "model_n_params": model.n_params, "threads": settings.threads,
        "command": argv, "log_file": str(log_path.relative_to(store.folder)), **host_fingerprint(),
    }
    tests = []
    reason = None if result.ok else result.describe_failure()
    if reason is None:
        try:
            tests = parse_bench_json(stdout_path.read_text(errors="replace"))
        except BenchOutputError as exc:
            reason = str(exc)
    if reason is not None:
        tail = " | ".join(line for line in result.output_tail.strip().splitlines()[-5:])
        store.append({**base, "run_id": rid, "status": "failed", "reason": f"{reason}: {tail}"[:2000]})
        report(f"  failed: {reason}")
        return
    for test in tests:
        store.append({**base, "run_id": run_id(rid, test.name), "status": "ok", "reason": "", "test": test.name,
                      "n_prompt": test.n_prompt, "n_gen": test.n_gen, "n_depth": test.n_depth,
                      "tps_mean": round(test.tps_mean, 3), "tps_stddev": round(test.tps_stddev, 3),
                      "tps_samples": [round(s, 3) for s in test.tps_samples],
                      "model_n_params": test.raw.get("model_n_params", model.n_params)})
        report(f"  {test.name}: {test.tps_mean:.1f} ± {test.tps_stddev:.1f} tokens/s")
