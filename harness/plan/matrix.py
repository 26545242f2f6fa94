"""The plan of a sweep: every model x strategy x parameter point x engine x tool, with its placement, exact
arguments and predicted memory; nothing runs."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import BenchConfig, ModelSpec
from harness.engines.discover import Engine, find_engine
from harness.errors import UserError
from harness.models.inspect import ModelInfo
from harness.plan.flags import CompiledFlags, compile_flags
from harness.plan.grid import expand_grid
from harness.plan.memory import MIB, MemoryPrediction, MemorySettings, predict_memory
from harness.plan.placement import Placement
from harness.plan.targets import resolve_target
from strategies.registry import get_strategy


@dataclass
class PlannedRun:
    model: str
    engine: Engine
    tool: str
    strategy: str
    params: dict
    placement: Placement | None
    flags: CompiledFlags | None
    memory: MemoryPrediction | None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "invalid"
        return "skipped: predicted-oom" if self.memory.fits is False else "planned"


def memory_settings(config: BenchConfig) -> MemorySettings:
    bench = config.bench
    return MemorySettings(n_ctx=bench.ctx, n_ubatch=bench.ubatch or 512, cache_type_k=bench.cache_type_k,
                          cache_type_v=bench.cache_type_v, flash_attn=bool(bench.flash_attn))


def vram_budget_bytes(config: BenchConfig) -> int | None:
    """The budget from bench.yaml, else the free memory NVML reports for the first GPU, else unknown."""
    if config.vram_budget_mib is not None:
        return int(config.vram_budget_mib * MIB)
    if config.vram_limit_gib is not None:  # an emulated card: its size is the budget
        return int(config.vram_limit_gib * 1024 * MIB)
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVIDIA driver or GPU: no budget to check against
        return None


def inspect_spec(spec: ModelSpec, config: BenchConfig) -> ModelInfo:
    """The model's layout without writing anything: a synthetic preset's plan, or the GGUF's header."""
    from harness.models import inspect_model, inspect_plan

    return inspect_plan(spec.synth) if spec.synth else inspect_model(config.resolve(spec.path))


def plan_sweep(config: BenchConfig) -> list[PlannedRun]:
    settings = memory_settings(config)
    budget = vram_budget_bytes(config)
    engines = [find_engine(e.name, config.engine_paths()) for e in config.engines]
    device = config.devices[0] if config.devices else None
    runs = []
    for spec in config.models:
        model = inspect_spec(spec, config)
        for strategy_spec in config.strategies:
            strategy = get_strategy(strategy_spec.name)
            for params in expand_grid(strategy_spec.params):
                try:
                    placement = strategy.placement(model, params)
                    memory = predict_memory(placement, model, settings, budget)
                except UserError as exc:  # e.g. a grid point beyond this model's layer count
                    placement, memory, error = None, None, str(exc)
                for engine in engines:
                    for tool in config.tools:
                        run = PlannedRun(spec.label, engine, tool, strategy.name, params, placement, None, memory)
                        if placement is None:
                            run.error = error
                        else:
                            try:
                                run.flags = compile_flags(placement, model, resolve_target(engine, tool, device))
                            except UserError as exc:
                                run.error = str(exc)
                        runs.append(run)
    return runs
