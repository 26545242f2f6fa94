"""The one planner: every configuration of a sweep, model x strategy x parameter point x knob values x engine x
tool, each with its placement, accelerator, placement flags, knob arguments, thread count, predicted memory and
predicted model buffers. `moebench run` plans with the real devices (the RPC rig's servers once started);
`moebench plan` and `moebench validate` with the rig's port as a placeholder (`RPC0[127.0.0.1:RPC_PORT]`) and
without writing synthetic models. Nothing else builds configurations.

A knob value an engine's tool cannot take (`harness.plan.knob_flags`) stops the whole sweep before anything
runs, with one line per engine, tool and knob; a grid point a model or engine cannot place becomes a
configuration with an `error` (a `failed` row that says why).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from harness.config import BenchConfig, BenchSettings, ModelSpec
from harness.cpus import CpuBudget
from harness.engines.discover import Engine
from harness.errors import UserError
from harness.models.inspect import ModelInfo
from harness.plan.flags import CompiledFlags, Target, compile_flags
from harness.grid import expand_grid
from harness.plan.knob_flags import KnobUnsupported, ToolSyntax, knob_args, knob_problems, tool_syntax
from harness.knobs import Knobs, knob_grid
from harness.plan.devices import RPC_PORT, accelerator_devices, default_split, vram_budgets  # noqa: F401
from harness.plan.memory import MemoryPrediction, MemorySettings, predict_memory
from harness.plan.placement import Placement
from harness.plan.targets import resolve_target
from harness.plan.verify import predicted_model_buffers
from harness.tools import Tool, tool_named
from strategies.registry import get_strategy

GGUF_ALIGNMENT = 32            # gguf's default general.alignment: each tensor's data starts at a multiple
CONTEXT_PADDING = 256          # both engines round a context up to a multiple of 256 tokens


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
    knobs: Knobs = field(default_factory=Knobs)
    threads: int = 1                                       # what the engine runs with: the knob, else the budget's
    placement: Placement | None = None
    target: Target | None = None
    flags: CompiledFlags | None = None
    knob_args: list[str] = field(default_factory=list)
    memory: MemoryPrediction | None = None
    predicted_buffers: dict[str, int] | None = None
    error: str | None = None                               # the reason it cannot run: a `failed` row
    engine_args: list[str] = field(default_factory=list)   # bench.yaml engine_args for this engine
    syntax: ToolSyntax | None = None                       # what the tool's binary parses

    @property
    def engine_tool(self) -> Tool:
        """The tool this configuration measures with (`tool` is its name, in rows and ids)."""
        return tool_named(self.tool)

    @property
    def placement_args(self) -> list[str]:
        return list(self.flags.args) if self.flags else []

    @property
    def device_names(self) -> dict[str, str]:
        """accel0, accel1, ... -> the engine's name for it (its buffer type: CUDA0, RPC0[host:port])."""
        return {f"accel{i}": b for i, b in enumerate(self.target.buffer_types)} if self.target else {}

    @property
    def label(self) -> str:
        what = self.placement.describe() if self.placement else (self.strategy or "engine defaults")
        knobs = self.knobs.describe()
        return f"{self.tool}  {self.engine.name}  {self.model.label}  {what}" + (f"  [{knobs}]" if knobs else "")


def stable_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def config_id(bench: BenchSettings, conf: Configuration) -> str:
    """What makes a configuration the same one: model identity, engine build, tool, placement, knob values and
    the other bench settings (not how often they are replicated). Device names are left out: the RPC rig's port
    changes every run."""
    return stable_id(conf.model.identity, conf.engine.name, conf.engine.version, conf.tool, conf.strategy,
                     conf.params, conf.engine_args, {**bench.identity(), **conf.knobs.identity()})


def resolve_model(spec: ModelSpec, config: BenchConfig, *, write: bool = True) -> ResolvedModel:
    """The model of `spec`; a synthetic one is written into the cache first when `write` (run), else described
    from its preset (plan: nothing is written, the path is where run will write it)."""
    from harness.models import inspect_model, inspect_plan, synthetic_model, synthetic_model_path

    if spec.synth:
        identity = f"synth:{spec.synth}:seed{spec.seed}"
        path = synthetic_model_path(spec.synth, spec.seed)
        if write:
            path = synthetic_model(spec.synth, seed=spec.seed)
        elif not path.is_file():
            return ResolvedModel(spec.label, path, identity, _with_layout_offsets(inspect_plan(spec.synth)))
        return ResolvedModel(spec.label, path, identity, inspect_model(path))
    path = config.resolve(spec.path).resolve()
    if not path.is_file():
        raise UserError(f"model file {path} does not exist (models: in {config.source_path})")
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
    identity = f"file:{path.name}:{path.stat().st_size}:{head}"
    info = inspect_model(path)
    if not info.tensors:
        raise UserError(f"model file {path} holds no weights (a vocabulary-only GGUF): nothing to benchmark")
    return ResolvedModel(spec.label, path, identity, info)


def _with_layout_offsets(info: ModelInfo) -> ModelInfo:
    """A preset's tensors with the data offsets the synthetic writer will give them (in plan order, each padded
    to the alignment), relative to the start of the data: enough for mapped-buffer spans."""
    offset, records = 0, []
    for record in info.tensors:
        records.append(replace(record, offset=offset))
        offset += (record.n_bytes + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT
    return replace(info, tensors=records)


def memory_settings(bench: BenchSettings, tool: str, knobs: Knobs, accelerator: str = "",
                    dialect: str = "mainline") -> MemorySettings:
    """What decides the KV cache and compute buffers of one configuration: its context (padded like the
    engines pad it), the micro-batch it really uses, the cache types, flash attention (unset: on, as both
    engines default to it: ik `flash_attn = true`, mainline `auto`, which its log shows enabled on the CPU and
    RPC backends and CUDA supports for these head sizes) and op offload (on unless switched off, where the
    accelerator offloads ops: not an RPC server); `dialect`: whose cache rules (ik's MLA cache, mainline's
    sliding-window cache)."""
    n_ctx = tool_named(tool).context_tokens(bench)  # before padding
    padded = (n_ctx + CONTEXT_PADDING - 1) // CONTEXT_PADDING * CONTEXT_PADDING
    offload = knobs.op_offload is not False and not accelerator.startswith("RPC")
    return MemorySettings(n_ctx=padded, n_ubatch=knobs.effective_ubatch(n_ctx), cache_type_k=knobs.cache_type_k,
                          cache_type_v=knobs.cache_type_v, flash_attn=knobs.flash_attn is not False,
                          op_offload=offload, dialect=dialect)


def tool_syntaxes(config: BenchConfig, engines: list[Engine]) -> dict[tuple[str, str], ToolSyntax]:
    """The probed syntax of every (engine, tool) of the sweep the engine has."""
    return {(e.name, tool): tool_syntax(e, tool) for e in engines for tool in config.tools if e.has(tool)}


def knob_errors(config: BenchConfig, syntaxes: dict[tuple[str, str], ToolSyntax], budget: CpuBudget
                ) -> list[KnobUnsupported]:
    """One error per knob value an engine's tool cannot take (empty: every one can)."""
    grid = knob_grid(config.bench)
    problems: dict[str, KnobUnsupported] = {}
    for syntax in syntaxes.values():
        for problem in knob_problems(grid, budget.engine_threads, syntax):
            problems.setdefault(str(problem), problem)
    return list(problems.values())


def check_knobs(config: BenchConfig, engines: list[Engine], budget: CpuBudget) -> dict[tuple[str, str], ToolSyntax]:
    """The syntax of each engine's tools; raises KnobUnsupported, one line per problem, when a knob value of the
    sweep cannot be set."""
    syntaxes = tool_syntaxes(config, engines)
    problems = knob_errors(config, syntaxes, budget)
    if problems:
        raise KnobUnsupported("\n".join(config.where(("bench", p.knob)) + str(p) for p in problems))
    return syntaxes


def plan_configurations(config: BenchConfig, models: list[ResolvedModel], engines: list[Engine],
                        devices: dict[str, list[str]], budget: CpuBudget,
                        syntaxes: dict[tuple[str, str], ToolSyntax] | None = None) -> list[Configuration]:
    """Every configuration, in grid order (model, strategy point, knobs, engine, tool; the run interleaves them
    in its own seeded order per round, `harness.runner.schedule`); `devices` gives each engine's accelerators by
    engine name (`harness.plan.devices`); a strategy that takes a split and has none gets the devices' budgets'
    proportions when there are several; `syntaxes`: what `check_knobs` found, when the caller has already
    checked. Raises UserError when a knob value cannot be set (see module doc)."""
    if syntaxes is None:
        syntaxes = check_knobs(config, engines, budget)
    vram_budget = vram_budgets(config)
    split = default_split(config)
    extra = {engine.name: config.engine_args.get(spec.name, []) for spec, engine in zip(config.engines, engines)}
    points = [(None, {})] if not config.strategies else [
        (spec.name, params) for spec in config.strategies for params in expand_grid(spec.params)]
    targets: dict[tuple[str, str], Target | UserError] = {}
    out: list[Configuration] = []
    for model in models:
        for strategy, params in points:
            for knobs in knob_grid(config.bench):
                for engine in engines:
                    for tool in config.tools:
                        conf = Configuration(model, engine, tool, strategy, dict(params), knobs,
                                             budget.threads(knobs.threads),
                                             engine_args=list(extra.get(engine.name, [])),
                                             syntax=syntaxes.get((engine.name, tool)))
                        if split and strategy and get_strategy(strategy).takes_split:
                            conf.params.setdefault("split", split)  # several devices: by their budgets
                        out.append(_planned(conf, config.bench, vram_budget,
                                            partial(_target, targets, engine, tool, devices)))
    return out


def _target(cache: dict, engine: Engine, tool: str, devices: dict[str, list[str]]) -> Target:
    """The accelerator of an engine's tool, resolved once (without a named device the engine is asked)."""
    key = (engine.name, tool)
    if key not in cache:
        try:
            cache[key] = resolve_target(engine, tool, devices.get(engine.name))
        except UserError as exc:
            cache[key] = exc
    if isinstance(cache[key], UserError):
        raise cache[key]
    return cache[key]


def _planned(conf: Configuration, bench: BenchSettings, vram_budget, target) -> Configuration:
    if conf.syntax is None:
        conf.error = f"engine {conf.engine.name} has no {conf.tool}"
        return conf
    conf.knob_args = knob_args(conf.knobs, conf.threads, conf.syntax)
    if conf.strategy is None:  # the engine's own default placement
        return conf
    info = conf.model.info
    try:
        conf.placement = get_strategy(conf.strategy).placement(info, conf.params)
        conf.target = target()
        settings = memory_settings(bench, conf.tool, conf.knobs, conf.target.buffer_type, conf.target.dialect)
        conf.memory = predict_memory(conf.placement, info, settings, vram_budget)
        conf.flags = compile_flags(conf.placement, info, conf.target)
        if not conf.placement.deferred:
            conf.predicted_buffers = predicted_model_buffers(conf.placement, info, conf.target, conf.flags,
                                                             mmap=conf.knobs.mmap)
    except UserError as exc:  # a grid point this model or engine cannot take: a row that says why
        conf.error = f"cannot place: {exc}"
    return conf


def plan_sweep(config: BenchConfig) -> list[tuple[str, Configuration]]:
    """What `moebench plan` shows: every (config id, configuration) exactly as `moebench run` will plan it, with
    the RPC rig's port as a placeholder and synthetic models described without being written, in grid order
    (the run interleaves them in its own seeded order per round)."""
    from harness.cpus import plan_budget
    from harness.engines.discover import find_engine

    engines = [find_engine(e.name, config.engine_paths()) for e in config.engines]
    budget = plan_budget(config.rpc_rig)
    models = [resolve_model(m, config, write=False) for m in config.models]
    confs = plan_configurations(config, models, engines, accelerator_devices(config, engines), budget)
    return [(config_id(config.bench, conf), conf) for conf in confs]


def status(conf: Configuration) -> str:
    """planned, skipped: predicted-oom, or invalid (it would be a failed row)."""
    if conf.error:
        return "invalid"
    return "skipped: predicted-oom" if conf.memory is not None and conf.memory.fits is False else "planned"
