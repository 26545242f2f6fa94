"""bench.yaml: the sweep a user asks for, validated with errors that name the file, line, key and allowed values.

    name: default                 # the sweep's folder under `output`
    output: results
    models:
      - synth: tiny               # a synthetic preset, written on demand into the cache
      - {synth: tiny, split_max_tensors: 40}   # the same, written as shards (-00001-of-00003.gguf, ...)
      - path: ~/models/Qwen3-30B-A3B-Q4_K_M.gguf
    engines:
      - mainline                  # a built engine (moebench engines build mainline)
      - name: my-cuda             # a user's own build, by path
        path: ~/src/llama.cpp/build/bin
    tools: [llama-bench]
    bench:
      prompt_tokens: [512]
      gen_tokens: [128]
      repetitions: 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator,
)

from harness.config_devices import RpcRig, device_problems
from harness.config_lines import line_for, line_index, validated_yaml
from harness.config_lines import unknown_message as _unknown
from harness.errors import UserError
from harness.grid import expand_values
from harness.knobs import KNOB_COLUMNS, KNOB_BY_NAME, KNOB_NAMES, check_knob_values
from harness.models.presets import PRESETS
from harness.models.shards import SplitRule
from strategies.registry import available_strategies


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """One model: a GGUF file, or a synthetic preset written on demand."""

    path: Path | None = None
    synth: str | None = None
    seed: int = 0
    split_max_tensors: int | None = Field(default=None, gt=0)  # a synthetic model written as shards (gguf-split's
    split_max_mib: int | None = Field(default=None, gt=0)      # --split-max-tensors / --split-max-size)

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        if (self.path is None) == (self.synth is None):
            raise ValueError("give exactly one of 'path' or 'synth'")
        if self.synth is not None:
            if self.synth not in PRESETS:
                raise ValueError(_unknown("synth preset", self.synth, PRESETS))
        elif self.split_max_tensors or self.split_max_mib:
            raise ValueError("split_max_tensors / split_max_mib split a synthetic model ('synth'); a file given by "
                             "'path' is read as it is (a split model by any of its shards)")
        return self

    @property
    def split(self) -> SplitRule | None:
        if not (self.split_max_tensors or self.split_max_mib):
            return None
        return SplitRule(max_tensors=self.split_max_tensors or 0, max_mib=self.split_max_mib or 0)

    @property
    def label(self) -> str:
        if not self.synth:
            return str(self.path)
        return f"synth:{self.synth}" + (f":{self.split.tag}" if self.split else "")


class EngineSpec(_Strict):
    """An engine: a built name (mainline, ik, or a cached id) or the user's own build folder."""

    name: str
    path: Path | None = None
    dialect: Literal["mainline", "ik"] | None = None


class StrategySpec(_Strict):
    """A strategy and its parameter grid: values, lists, or ranges such as "0..48 step 4"."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        known = available_strategies()
        if name not in known:
            raise ValueError(_unknown("strategy", name, known))
        return name

    @field_validator("params")
    @classmethod
    def _ranges(cls, params: dict[str, Any]) -> dict[str, Any]:
        for key, value in params.items():
            expand_values(value)  # raises ValueError on a bad range
        return params


class Until(_Strict):
    """Adaptive stopping: after `processes` rounds, keep adding rounds, only for the configurations whose 95%
    interval (of any test) is still wider than ±`ci_pct` percent of its mean, up to `max_processes` processes
    each and `max_minutes` for the whole sweep."""

    ci_pct: float = Field(gt=0, le=100, description="target half-width of the 95% interval, % of the mean")
    max_processes: int = Field(10, ge=2, le=100)
    max_minutes: float | None = Field(None, gt=0)


class _BenchSettingsBase(_Strict):
    """`bench:` besides the engine knobs (`BenchSettings` adds one field per knob of `harness.knobs.KNOB_TABLE`)."""

    prompt_tokens: list[int] = Field(default_factory=lambda: [512])
    gen_tokens: list[int] = Field(default_factory=lambda: [128])
    depth: list[int] = Field(default_factory=lambda: [0], description="context already filled (llama-bench -d)")
    concurrency: list[int] = Field(default_factory=lambda: [1], description="llama-server: requests at once")
    repetitions: int = Field(3, ge=1, le=100, description="measured repetitions inside each process")
    processes: int = Field(3, ge=1, le=100, description="fresh processes per configuration, run in interleaved "
                                                         "rounds: the unit of replication")
    until: Until | None = None
    ctx: int = Field(4096, ge=16, description="llama-server's context per request slot, ik sweep-bench's "
                                              "context (llama-bench sizes its own from each test)")

    def identity(self) -> dict:
        """The settings besides the knobs that make a measurement what it is (not how often it is replicated);
        each configuration adds its own knob values (`Knobs.identity`)."""
        return self.model_dump(exclude={"processes", "until", *KNOB_NAMES})

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if not values or any(v < 1 for v in values):
            raise ValueError("give a list of request counts >= 1")
        return values

    @field_validator("prompt_tokens", "gen_tokens", "depth")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        if not values or any(v < 0 for v in values):
            raise ValueError("give a list of token counts >= 0")
        return values


def _knob_field(name: str) -> tuple:
    """A knob's bench.yaml field: a value or a list of values (an axis), None for the engine's default."""
    knob = KNOB_BY_NAME[name]
    kind = knob.type
    annotation = kind | list[kind] if knob.default is not None else kind | list[kind] | None
    return annotation, Field(knob.default, description=knob.description)


def _knob_values(cls, value: Any, info: ValidationInfo) -> Any:
    return check_knob_values(info.field_name, value)


# bench.yaml's `bench:` section: the settings above and each engine knob (`harness.knobs`), a value or a list of
# values that becomes an axis of the grid; the fields in `KNOB_COLUMNS` order, as they have always been dumped
BenchSettings = create_model(
    "BenchSettings", __base__=_BenchSettingsBase, __module__=__name__,
    __validators__={"_knob_values": field_validator(*KNOB_NAMES, mode="before")(_knob_values)},
    **{name: _knob_field(name) for name in KNOB_COLUMNS})


class RunOrder(_Strict):
    """Configurations run in a random order by default (drift and heat then do not favour one strategy)."""

    random: bool = True
    seed: int = 0


class TelemetrySettings(_Strict):
    enabled: bool = True
    hz: float = Field(10.0, gt=0, le=100, description="samples per second")


class Timeouts(_Strict):
    run_s: float = Field(600, gt=0)


class BenchConfig(_Strict):
    name: str = Field("default", pattern=r"^[A-Za-z0-9._-]+$")
    output: Path = Path("results")
    models: list[ModelSpec]
    engines: list[EngineSpec]
    tools: list[Literal["llama-bench", "llama-server", "llama-sweep-bench"]] = Field(
        default_factory=lambda: ["llama-bench"])
    strategies: list[StrategySpec] = Field(default_factory=list)
    # the accelerators and their budgets (harness/config_devices.py)
    devices: list[str] = Field(default_factory=list, description="the accelerators as engines name them")
    rpc: list[str] = Field(default_factory=list, description="remote RPC servers (host:port), a device each")
    rpc_rig: RpcRig | None = Field(None, description="each engine's own RPC server(s) on loopback as devices "
                                                    "(true: one; {servers: 2})")
    vram_budget_mib: float | list[float] | None = Field(None, description="per device: one number, or a list")
    vram_limit_gib: float | None = Field(None, gt=0, description="emulate a card this size: reserve the rest")
    vram_limit_device: int = Field(0, ge=0, description="the CUDA device index vram_limit_gib applies to")
    bench: BenchSettings = Field(default_factory=BenchSettings)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    order: RunOrder = Field(default_factory=RunOrder)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    engine_args: dict[str, list[str]] = Field(default_factory=dict,
                                              description="extra arguments per engine name, e.g. {ik: [-fmoe, 1]}")

    @field_validator("engines", "strategies", mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("rpc_rig", mode="before")
    @classmethod
    def _rig_shorthand(cls, value: Any) -> Any:
        return {"servers": 1} if value is True else None if value is False else value

    # set by load_config: where the file lives, for resolving relative paths
    source_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _engine_args_name_engines(self) -> "BenchConfig":
        names = [e.name for e in self.engines]
        for name in self.engine_args:
            if name not in names:
                raise ValueError(_unknown("engine in engine_args", name, names))
        return self

    def resolve(self, path: Path) -> Path:
        path = Path(path).expanduser()
        if path.is_absolute() or self.source_path is None:
            return path
        return (self.source_path.parent / path).resolve()

    def where(self, key: tuple) -> str:
        """`bench.yaml:12: bench.ubatch: `: where a key is written, to start a message about it."""
        if self.source_path is None:
            return ""
        try:
            line = line_for(key, line_index(yaml.compose(self.source_path.read_text())))
        except (OSError, yaml.YAMLError):
            line = None
        name = ".".join(map(str, key))
        return f"{self.source_path}:{line}: {name}: " if line else f"{self.source_path}: {name}: "

    def engine_paths(self) -> dict[str, Path]:
        return {e.name: self.resolve(e.path) for e in self.engines if e.path is not None}


def load_config(path: Path) -> BenchConfig:
    """Read and validate bench.yaml; any mistake raises UserError naming file, line, key and allowed values."""
    path = Path(path)
    config, _ = validated_yaml(path, BenchConfig, "a sweep description in YAML (like bench.yaml), which "
                               "names its models under `models:`", "name, models, engines, ...")
    config.source_path = path.resolve()
    problem = _context_problem(config)
    if problem:
        raise UserError(config.where(("bench", "ctx")) + problem)
    problems = device_problems(config)
    if problems:
        raise UserError("\n".join(config.where(key) + message for key, message in problems))
    return config


def _context_problem(config: BenchConfig) -> str | None:
    """llama-server holds each request in a context of `bench.ctx` tokens (per slot): the longest prompt and
    generation must fit, else every server row would fail. (llama-bench sizes its own context; ik's
    sweep-bench fills `ctx` by design.)"""
    if "llama-server" not in config.tools:
        return None
    bench = config.bench
    need = max(bench.prompt_tokens) + max(bench.gen_tokens)
    if bench.ctx >= need:
        return None
    return (f"{bench.ctx} tokens cannot hold the longest llama-server request (bench.prompt_tokens "
            f"{max(bench.prompt_tokens)} + bench.gen_tokens {max(bench.gen_tokens)} = {need}); raise bench.ctx to "
            f"at least {need} or shorten the tests")
