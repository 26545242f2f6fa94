"""What the planner is asked: the models, engines, tools, strategies with their parameter grids, the engine
knob values and the other bench settings (`BenchSettings`), the accelerators and their budgets. Not a whole
sweep: how often, in which order, with which telemetry and where the rows go is the runner's business.

`moebench run`, `plan` and `validate` build the request from bench.yaml (`request_from_config`); `flags`,
`predict`, `tune`, `calibrate` and `explain` build it directly, so nothing has to write a bench.yaml to plan
one point. Paths in a request are absolute (bench.yaml's relative ones are resolved against its folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from harness.config import BenchConfig, BenchSettings, EngineSpec, ModelSpec, StrategySpec
from harness.config_devices import RpcRig
from harness.errors import UserError
from strategies.registry import get_strategy


def _nowhere(key: tuple) -> str:
    return ""


@dataclass(frozen=True)
class PlanRequest:
    models: list[ModelSpec]
    engines: list[EngineSpec]
    tools: list[str] = field(default_factory=lambda: ["llama-bench"])
    strategies: list[StrategySpec] = field(default_factory=list)   # none: the engine's own default placement
    bench: BenchSettings = field(default_factory=BenchSettings)     # tests, context, knob values (lists: axes)
    # the accelerators and their budgets, as bench.yaml names them (harness/config_devices.py)
    devices: list[str] = field(default_factory=list)
    rpc: list[str] = field(default_factory=list)
    rpc_rig: RpcRig | None = None
    vram_budget_mib: float | list[float] | None = None
    vram_limit_gib: float | None = None
    engine_args: dict[str, list[str]] = field(default_factory=dict)  # per engine name
    # how to plan: `run` writes synthetic models and knows the RPC rig's ports (engine name -> endpoints);
    # otherwise presets are described without being written and the ports are placeholders
    write_models: bool = False
    rpc_endpoints: dict[str, list[str]] | None = None
    # for messages: the file the request came from, and where a key of it is written (`BenchConfig.where`)
    source: Path | None = None
    where: Callable[[tuple], str] = _nowhere

    def engine_paths(self) -> dict[str, Path]:
        return {e.name: Path(e.path) for e in self.engines if e.path is not None}


def request_from_config(config: BenchConfig) -> PlanRequest:
    """The planning request of a bench.yaml: its paths resolved against the file's folder."""
    models = [m.model_copy(update={"path": config.resolve(m.path).resolve()}) if m.path is not None else m
              for m in config.models]
    engines = [e.model_copy(update={"path": config.resolve(e.path)}) if e.path is not None else e
               for e in config.engines]
    return PlanRequest(models=models, engines=engines, tools=list(config.tools), strategies=list(config.strategies),
                       bench=config.bench, devices=list(config.devices), rpc=list(config.rpc),
                       rpc_rig=config.rpc_rig, vram_budget_mib=config.vram_budget_mib,
                       vram_limit_gib=config.vram_limit_gib, engine_args=dict(config.engine_args),
                       source=config.source_path, where=config.where)


def point_request(model: dict, engine: dict, strategy: str, params: dict, *, tool: str, rpc_rig: bool,
                  device: str | None, bench: BenchSettings) -> PlanRequest:
    """The request of one strategy's points on one model, engine and tool: `model` and `engine` as bench.yaml
    entries (`{synth}` or `{path}`; `{name}` or `{name, path}`), `params` its parameters (a list is an axis), on
    the RPC rig or a device (None: the engine's first accelerator)."""
    get_strategy(strategy)  # an unknown name: one line with the names it may have meant
    return PlanRequest(models=[ModelSpec(**model)], engines=[EngineSpec(**engine)], tools=[tool],
                       strategies=[StrategySpec(name=strategy, params=params)], bench=bench,
                       devices=[device] if device else [], rpc_rig=RpcRig() if rpc_rig else None)


def bench_settings(**values) -> BenchSettings:
    """Bench settings from a command line's values (tests, context, `--knob name=value`); a value that is not
    one raises UserError, one line per mistake."""
    try:
        return BenchSettings(**values)
    except ValidationError as exc:
        raise UserError("\n".join(f"{'.'.join(map(str, e['loc'])) or 'bench'}: {e['msg']}"
                                   for e in exc.errors())) from None
