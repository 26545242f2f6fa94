"""The one planner: `plan(request)` gives every configuration a request (`harness.plan.request.PlanRequest`)
asks for, model x strategy x parameter point x knob values x engine x tool, each with its id, placement,
accelerator, placement flags, knob arguments, thread count, predicted memory and predicted model buffers.
`moebench run` plans with the real devices (the RPC rig's servers once started) and writes synthetic models;
everything else (`plan`, `validate`, `flags`, `predict`, `tune`, `calibrate`, `explain` of an older folder) with
the rig's port as a placeholder (`RPC0[127.0.0.1:RPC_PORT]`) and without writing them. Nothing else builds
configurations.

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

from harness.config import BenchSettings, ModelSpec
from harness.cpus import CpuBudget, cpu_budget
from harness.engines.discover import Engine, find_engine
from harness.errors import UserError
from harness.models import inspect_model, inspect_preset, synthetic_model, synthetic_model_path
from harness.models.inspect import ModelInfo
from harness.models.shards import SplitRule, shard_path
from harness.plan.flags import CompiledFlags, Target, compile_flags, ngl_places_weights
from harness.grid import expand_grid
from harness.plan.knob_flags import KnobUnsupported, ToolSyntax, knob_args, knob_problems, tool_syntax
from harness.knobs import Knobs, knob_grid
from harness.plan.devices import RPC_PORT, accelerator_devices, default_split, vram_budgets  # noqa: F401
from harness.plan.memory import MemoryPrediction, MemorySettings, padded_context, predict_memory
from harness.plan.placement import CPU, Placement
from harness.plan.request import PlanRequest
from harness.plan.targets import resolve_target
from harness.plan.verify import predicted_model_buffers
from harness.tools import Tool, tool_named
from strategies.registry import get_strategy

GGUF_ALIGNMENT = 32            # gguf's default general.alignment: each tensor's data starts at a multiple


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
    id: str = ""                                           # `config_id`, set by `plan`

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
    def engine_device_names(self) -> dict[str, str]:
        """Every placement device (cpu, accel0, ...) -> the name the engine reports its buffers under."""
        return {CPU: "CPU", **self.device_names}

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


def resolve_model(spec: ModelSpec, *, write: bool = False, source: Path | None = None) -> ResolvedModel:
    """The model of `spec` (a path: absolute, `request_from_config` resolves bench.yaml's); a synthetic one is
    written into the cache first when `write` (run), else described from its preset (nothing is written, the
    path is where run will write it). A split model is given to the engines by its first shard (both load a
    split model only from it), whichever shard `path` names. `source`: the file that named the model, for the
    message."""
    if spec.synth:
        split = spec.split
        identity = f"synth:{spec.synth}:seed{spec.seed}" + (f":{split.tag}" if split else "")
        path = synthetic_model_path(spec.synth, spec.seed, split=split)
        if write:
            path = synthetic_model(spec.synth, seed=spec.seed, split=split)
        elif not path.is_file():
            info = _with_layout_offsets(inspect_preset(spec.synth), path, split)
            return ResolvedModel(spec.label, path, identity, info)
        return ResolvedModel(spec.label, path, identity, inspect_model(path))
    path = Path(spec.path).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"model file {path} does not exist" + (f" (models: in {source})" if source else ""))
    info = inspect_model(path)
    first = Path(info.path or path)
    with open(first, "rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:16]
    identity = f"file:{first.name}:{info.file_size_bytes}:{head}"
    if not info.tensors:
        raise UserError(f"model file {path} holds no weights (a vocabulary-only GGUF): nothing to benchmark")
    return ResolvedModel(spec.label, first, identity, info)


def _with_layout_offsets(info: ModelInfo, path: Path | None = None, split: SplitRule | None = None) -> ModelInfo:
    """A preset's tensors with the data offsets the synthetic writer will give them (in plan order, each padded
    to the alignment), relative to the start of the data of their file: enough for mapped-buffer spans. Split,
    each tensor's file is the shard the writer will put it in (offsets start again in each)."""
    shards = split.shard_of_each([r.n_bytes for r in info.tensors]) if split else [0] * len(info.tensors)
    n_files = 1 + max(shards, default=0)
    files: list[str | None] = [None] * n_files
    if path is not None:
        files = [str(shard_path(path, i, n_files)) for i in range(n_files)] if split else [str(path)]
    offsets, records = [0] * n_files, []
    for record, shard in zip(info.tensors, shards):
        records.append(replace(record, offset=offsets[shard], file=files[shard]))
        offsets[shard] += (record.n_bytes + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT
    return replace(info, tensors=records, files=[f for f in files if f])


def memory_settings(bench: BenchSettings, tool: str, knobs: Knobs, target: Target | None = None) -> MemorySettings:
    """What decides the KV cache and compute buffers of one configuration: its context (padded like the
    engine pads it), the micro-batch it really uses, the cache types, flash attention (unset: on, as both
    engines default to it: ik `flash_attn = true`, mainline `auto`, which its log shows enabled on the CPU and
    RPC backends and CUDA supports for these head sizes), op offload (on unless switched off, where the
    accelerator offloads ops: not an RPC server), the engine's dialect and where it keeps the KV cache (ik on an
    RPC device: on the CPU, `harness.plan.flags.ngl_places_weights`) and the outputs mainline reserves."""
    accelerator = target.buffer_type if target else ""
    dialect = target.dialect if target else "mainline"
    flash_attn = knobs.flash_attn is not False
    n_ctx = tool_named(tool).context_tokens(bench)  # before padding
    padded = padded_context(n_ctx, dialect, flash_attn)
    offload = knobs.op_offload is not False and not accelerator.startswith("RPC")
    # the micro-batch is bounded by the context: mainline's unpadded one, ik's padded one (llama_context)
    ubatch = knobs.effective_ubatch(padded if dialect == "ik" else n_ctx)
    # mainline's llama-server reserves one output per slot (no draft model); llama-bench every token of the
    # micro-batch (n_outputs_max = n_batch), as ik always does
    n_outputs_max = max(bench.concurrency) if tool == "llama-server" and dialect != "ik" else None
    return MemorySettings(n_ctx=padded, n_ubatch=ubatch, cache_type_k=knobs.cache_type_k,
                          cache_type_v=knobs.cache_type_v, flash_attn=flash_attn, op_offload=offload,
                          dialect=dialect, kv_on_cpu=target is not None and not ngl_places_weights(target),
                          mla_mode=knobs.mla, attn_max_batch_mib=knobs.attn_max_batch_mib or 0,
                          swa_full=bool(knobs.swa_full), n_outputs_max=n_outputs_max)


def find_engines(request: PlanRequest) -> list[Engine]:
    """The request's engines, found by name or build folder."""
    return [find_engine(e.name, request.engine_paths()) for e in request.engines]


def tool_syntaxes(request: PlanRequest, engines: list[Engine]) -> dict[tuple[str, str], ToolSyntax]:
    """The probed syntax of every (engine, tool) of the request the engine has."""
    return {(e.name, tool): tool_syntax(e, tool) for e in engines for tool in request.tools if e.has(tool)}


def knob_errors(request: PlanRequest, syntaxes: dict[tuple[str, str], ToolSyntax], budget: CpuBudget
                ) -> list[KnobUnsupported]:
    """One error per knob value an engine's tool cannot take (empty: every one can)."""
    grid = knob_grid(request.bench)
    problems: dict[str, KnobUnsupported] = {}
    for syntax in syntaxes.values():
        for problem in knob_problems(grid, budget.engine_threads, syntax):
            problems.setdefault(str(problem), problem)
    return list(problems.values())


def check_knobs(request: PlanRequest, engines: list[Engine], budget: CpuBudget
                ) -> dict[tuple[str, str], ToolSyntax]:
    """The syntax of each engine's tools; raises KnobUnsupported, one line per problem, when a knob value of the
    request cannot be set."""
    syntaxes = tool_syntaxes(request, engines)
    problems = knob_errors(request, syntaxes, budget)
    if problems:
        raise KnobUnsupported("\n".join(request.where(("bench", p.knob)) + str(p) for p in problems))
    return syntaxes


def plan(request: PlanRequest) -> list[Configuration]:
    """Every configuration of `request`, each with its id, in grid order (model, strategy point, knobs, engine,
    tool; the run interleaves them in its own seeded order per round, `harness.runner.schedule`); each engine's
    accelerators from `harness.plan.devices` (on the RPC rig: `request.rpc_endpoints`, else placeholders); a
    strategy that takes a split and has none gets the devices' budgets' proportions when there are several.
    Raises UserError when an engine is not found or a knob value cannot be set (see module doc)."""
    engines = find_engines(request)
    budget = cpu_budget(request.rpc_rig)
    syntaxes = check_knobs(request, engines, budget)
    models = [resolve_model(m, write=request.write_models, source=request.source) for m in request.models]
    devices = accelerator_devices(request, engines, request.rpc_endpoints)
    vram_budget = vram_budgets(request)
    split = default_split(request)
    extra = {engine.name: request.engine_args.get(spec.name, []) for spec, engine in zip(request.engines, engines)}
    points = [(None, {})] if not request.strategies else [
        (spec.name, params) for spec in request.strategies for params in expand_grid(spec.params)]
    targets: dict[tuple[str, str], Target | UserError] = {}
    out: list[Configuration] = []
    for model in models:
        for strategy, params in points:
            for knobs in knob_grid(request.bench):
                for engine in engines:
                    for tool in request.tools:
                        conf = Configuration(model, engine, tool, strategy, dict(params), knobs,
                                             budget.threads(knobs.threads),
                                             engine_args=list(extra.get(engine.name, [])),
                                             syntax=syntaxes.get((engine.name, tool)))
                        if split and strategy and get_strategy(strategy).takes_split:
                            conf.params.setdefault("split", split)  # several devices: by their budgets
                        out.append(_planned(conf, request.bench, vram_budget,
                                            partial(_target, targets, engine, tool, devices)))
                        conf.id = config_id(request.bench, conf)
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
        settings = memory_settings(bench, conf.tool, conf.knobs, conf.target)
        conf.memory = predict_memory(conf.placement, info, settings, vram_budget)
        conf.flags = compile_flags(conf.placement, info, conf.target)
        if not conf.placement.deferred:
            conf.predicted_buffers = predicted_model_buffers(conf.placement, info, conf.target, conf.flags,
                                                             mmap=conf.knobs.mmap)
    except UserError as exc:  # a grid point this model or engine cannot take: a row that says why
        conf.error = f"cannot place: {exc}"
    return conf


def status(conf: Configuration) -> str:
    """planned, skipped: predicted-oom, or invalid (it would be a failed row)."""
    if conf.error:
        return "invalid"
    return "skipped: predicted-oom" if conf.memory is not None and conf.memory.fits is False else "planned"
