"""The configurations a sweep runs: model x engine x tool, and for each strategy and parameter point its
placement, exact flags and predicted memory (from `harness.plan`). Without strategies, each engine runs with
its own default placement."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import BenchConfig, ModelSpec
from harness.engines.discover import Engine
from harness.errors import UserError
from harness.models.inspect import ModelInfo
from harness.plan.flags import CompiledFlags, Target, compile_flags
from harness.plan.grid import expand_grid
from harness.plan.matrix import memory_settings, vram_budget_bytes
from harness.plan.memory import MemoryPrediction, predict_memory
from harness.plan.placement import Placement
from harness.plan.targets import resolve_target
from harness.plan.verify import predicted_model_buffers
from strategies.registry import get_strategy


@dataclass
class ResolvedModel:
    label: str
    path: Path
    identity: str          # what makes two runs' models the same model
    info: ModelInfo


@dataclass
class Configuration:
    model: ResolvedModel
    engine: Engine
    tool: str
    strategy: str | None = None
    params: dict = field(default_factory=dict)
    placement: Placement | None = None
    target: Target | None = None
    flags: CompiledFlags | None = None
    memory: MemoryPrediction | None = None
    predicted_buffers: dict[str, int] | None = None
    error: str | None = None
    engine_args: list[str] = field(default_factory=list)   # bench.yaml engine_args for this engine

    @property
    def extra_args(self) -> list[str]:
        return (list(self.flags.args) if self.flags else []) + self.engine_args

    @property
    def label(self) -> str:
        what = self.placement.describe() if self.placement else (self.strategy or "engine defaults")
        return f"{self.tool}  {self.engine.name}  {self.model.label}  {what}"


def resolve_model(spec: ModelSpec, config: BenchConfig) -> ResolvedModel:
    from harness.models import inspect_model, synthetic_model

    if spec.synth:
        path = synthetic_model(spec.synth, seed=spec.seed)
        identity = f"synth:{spec.synth}:seed{spec.seed}"
    else:
        path = config.resolve(spec.path).resolve()
        if not path.is_file():
            raise UserError(f"model file {path} does not exist (models: in {config.source_path})")
        with open(path, "rb") as fh:
            head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
        identity = f"file:{path.name}:{path.stat().st_size}:{head}"
    return ResolvedModel(spec.label, path, identity, inspect_model(path))


def configurations(config: BenchConfig, models: list[ResolvedModel], engines: list[Engine],
                   devices: dict[str, str]) -> list[Configuration]:
    """Every configuration, in the configured order (random with a seed by default); `devices` gives each
    engine's accelerator by engine name."""
    out = _all_configurations(config, models, engines, devices)
    extra = {engine.name: config.engine_args.get(spec.name, []) for spec, engine in zip(config.engines, engines)}
    for conf in out:
        conf.engine_args = list(extra.get(conf.engine.name, []))
    if config.order.random:
        random.Random(config.order.seed).shuffle(out)
    return out


def _all_configurations(config: BenchConfig, models: list[ResolvedModel], engines: list[Engine],
                        devices: dict[str, str]) -> list[Configuration]:
    out: list[Configuration] = []
    settings, budget = memory_settings(config), vram_budget_bytes(config)
    for model in models:
        if not config.strategies:
            out += [Configuration(model, engine, tool) for engine in engines for tool in config.tools]
            continue
        for spec in config.strategies:
            strategy = get_strategy(spec.name)
            for params in expand_grid(spec.params):
                for engine in engines:
                    for tool in config.tools:
                        out.append(_planned(Configuration(model, engine, tool, spec.name, params), strategy,
                                            devices.get(engine.name), settings, budget))
    return out


def _planned(conf: Configuration, strategy, device: str | None, settings, budget) -> Configuration:
    info = conf.model.info
    try:
        conf.placement = strategy.placement(info, conf.params)
        conf.memory = predict_memory(conf.placement, info, settings, budget)
        conf.target = resolve_target(conf.engine, conf.tool, device)
        conf.flags = compile_flags(conf.placement, info, conf.target)
        if not conf.placement.deferred:
            conf.predicted_buffers = predicted_model_buffers(conf.placement, info, conf.target, conf.flags)
    except UserError as exc:  # a grid point this model or engine cannot take: a row that says why
        conf.error = str(exc)
    return conf
