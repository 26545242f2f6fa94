"""Engine knobs: the settings besides the placement that change speed or memory, each a possible axis of the
sweep's grid. bench.yaml gives each knob one value or a list (`ubatch: [512, 2048, 4096]`); every list is an
axis, crossed with the other knobs and with each strategy's parameter grid. A configuration carries one value
per knob (`Knobs`), and that value is part of its identity.

`KNOB_TABLE` is the one table of the knobs: bench.yaml's `bench:` keys (`harness.config` builds its fields and
validation from it), the planner's `Knobs`, the runs.csv columns (`harness.results.record`: `KNOB_COLUMNS`), the
analysis's short names (`ub=2048`, `harness.analysis.knobs`). Its order (`KNOB_NAMES`) is the analysis's and
the planner's; `KNOB_COLUMNS` is the order bench.yaml's schema and runs.csv have listed them since they came.

| knob | values | engine default when left out |
|---|---|---|
| `ubatch`, `batch` | micro-batch / logical batch, tokens | 512 / 2048 |
| `threads`, `threads_batch` | threads for generation / prompt processing | one per physical core / as threads |
| `flash_attn` | true / false | the engine's (mainline auto, ik on) |
| `op_offload` | true / false: offload host tensor operations to the accelerator | on |
| `load_mode` | `mmap`, `no-mmap`, `mlock` (mapped and locked in RAM) | mmap |
| `cache_type_k`, `cache_type_v` | KV cache types (`CACHE_TYPE_BYTES`: f16, q8_0, ...) | f16 (always passed) |
| `mla` | ik's multi-head latent attention mode, 0-3 (`-mla`; MLA models: deepseek2) | ik: 3; mainline has no such flag |
| `swa_full` | true / false: a full-context cache on sliding-window layers too (mainline's `--swa-full`) | off |
| `attn_max_batch_mib` | ik's `-amb N`: an attention K*Q (f32) over N MiB is computed in steps | ik: 0 (no limit) |

How each knob is spelled for each engine and tool is `harness.plan.knob_flags`. This module sits below config
and the planner: it imports only `harness.errors`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.errors import unknown_name

LOAD_MODES = ("mmap", "no-mmap", "mlock")
# the KV cache types the cache_type knobs allow, with their bytes per element (ggml's block size / 32 values)
CACHE_TYPE_BYTES = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
    "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32, "q6_0": 26 / 32,
}
DEFAULT_UBATCH = 512     # both engines' n_ubatch default (llama_context_default_params)
DEFAULT_BATCH = 2048     # both engines' n_batch default


@dataclass(frozen=True)
class Knob:
    """One engine knob: its bench.yaml key and runs.csv column (`name`), the type of a value, the short name a
    configuration's label uses (`ub`), what the engine does when it is left out (`default_text`), the value
    bench.yaml's schema gives it when left out (`default`: None, the engine's own; cache types f16, always
    passed), the allowed values where they are a list, the schema's description, and its place among the
    runs.csv columns and bench.yaml's fields (`column_rank`)."""

    name: str
    type: type
    short: str
    default_text: str
    column_rank: int
    default: Any = None
    choices: tuple[Any, ...] = ()
    description: str | None = None
    listed_when_set: bool = False   # table.csv lists its column only when some row sets it (a knob added after
                                    # folders were written without it: their table.csv stays as it was)

    @property
    def column(self) -> str:
        return self.name

    @property
    def switch(self) -> bool:
        """An on/off knob (written true/false in bench.yaml, on/off in labels)."""
        return self.type is bool


KNOB_TABLE = (
    Knob("ubatch", int, "ub", "512", 3),
    Knob("batch", int, "b", "2048", 2),
    Knob("threads", int, "t", "one per physical core", 0,
         description="default: one per physical core of the engine's CPUs"),
    Knob("threads_batch", int, "tb", "as threads", 1, description="prompt-processing threads; default: threads"),
    Knob("flash_attn", bool, "fa", "the engine's (mainline auto, ik on)", 4),
    Knob("op_offload", bool, "op", "on", 5),
    Knob("load_mode", str, "load", "mmap", 6, choices=LOAD_MODES,
         description="mmap, no-mmap or mlock (mapped and locked)"),
    Knob("cache_type_k", str, "ctk", "f16", 7, default="f16", choices=tuple(CACHE_TYPE_BYTES)),
    Knob("cache_type_v", str, "ctv", "f16", 8, default="f16", choices=tuple(CACHE_TYPE_BYTES)),
    Knob("mla", int, "mla", "ik: 3; mainline: none", 9, choices=(0, 1, 2, 3),
         description="ik's MLA mode for deepseek2 models: 0 (none), 1, 2 or 3 (ik's default)", listed_when_set=True),
    Knob("swa_full", bool, "swafull", "off", 10, listed_when_set=True,
         description="a full-context KV cache on sliding-window layers too (mainline llama-server --swa-full)"),
    Knob("attn_max_batch_mib", int, "amb", "ik: 0 (no limit); mainline: none", 11, listed_when_set=True,
         description="ik's -amb: the MiB an attention K*Q product may take before ik splits it into steps"),
)
KNOB_NAMES = tuple(k.name for k in KNOB_TABLE)
KNOB_BY_NAME = {k.name: k for k in KNOB_TABLE}
KNOB_COLUMNS = tuple(k.column for k in sorted(KNOB_TABLE, key=lambda k: k.column_rank))

# Knobs that were bench settings before knobs became axes: always part of a configuration's identity, so that
# sweeps started before keep their config ids (and resume). The others join the identity only when set.
_LEGACY_IDENTITY = ("threads", "batch", "ubatch", "flash_attn", "cache_type_k", "cache_type_v")


@dataclass(frozen=True)
class Knobs:
    """One value per knob; None leaves the knob at the engine's default (threads: the CPU budget's)."""

    ubatch: int | None = None
    batch: int | None = None
    threads: int | None = None
    threads_batch: int | None = None
    flash_attn: bool | None = None
    op_offload: bool | None = None
    load_mode: str | None = None
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    mla: int | None = None
    swa_full: bool | None = None
    attn_max_batch_mib: int | None = None

    def identity(self) -> dict[str, Any]:
        """What makes two configurations' knobs the same (see `_LEGACY_IDENTITY`)."""
        return {k: v for k, v in asdict(self).items() if k in _LEGACY_IDENTITY or v is not None}

    def columns(self) -> dict[str, Any]:
        """The results columns (`threads` is written by the runner: the count the engine really ran with)."""
        return {k: v for k, v in asdict(self).items() if k != "threads"}

    @property
    def mmap(self) -> bool:
        """Whether the engine maps the model file (decides what its CPU model buffer costs)."""
        return self.load_mode != "no-mmap"

    def effective_ubatch(self, n_ctx: int) -> int:
        """The micro-batch the engine really uses: n_ubatch = min(ubatch, n_batch), n_batch = min(batch, n_ctx)
        (llama_context: a causal model never batches more tokens than its context holds)."""
        batch = min(self.batch or DEFAULT_BATCH, n_ctx)
        return max(min(self.ubatch or DEFAULT_UBATCH, batch), 1)

    def describe(self, names: tuple[str, ...] | list[str] | None = None) -> str:
        """`ubatch=2048, threads=4`: the knobs in `names` (default: those set, cache types only when not f16)."""
        if names is None:
            names = [f.name for f in fields(self) if getattr(self, f.name) not in (None, "f16")]
        return ", ".join(f"{name}={_shown(getattr(self, name))}" for name in names)


def _shown(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def check_knob_values(name: str, value: Any) -> Any:
    """A knob's value or list of values from bench.yaml (a list is an axis), checked against `KNOB_TABLE`;
    cache types lower-cased. Raises ValueError saying what is allowed."""
    if value is None:
        return value
    knob = KNOB_BY_NAME[name]
    items = value if isinstance(value, list) else [value]
    if name.startswith("cache_type"):
        for item in items:
            if not isinstance(item, str) or item.lower() not in CACHE_TYPE_BYTES:
                raise ValueError(str(unknown_name("cache type", str(item), CACHE_TYPE_BYTES, "allowed")))
        items = [item.lower() for item in items]
        value = items if isinstance(value, list) else items[0]
    valid, expected = _rule(knob)
    if not items or not all(valid(v) for v in items):
        raise ValueError(f"give {expected}, or a list of them")
    if len(set(map(repr, items))) != len(items):
        raise ValueError("a value is listed twice")
    return value


def _rule(knob: Knob):
    """(is a value valid, what to give) for one knob, from its type and choices."""
    if knob.type is bool:
        return (lambda v: isinstance(v, bool)), "true or false"
    if knob.type is int and knob.choices:
        return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v in knob.choices), \
            f"one of {', '.join(map(str, knob.choices))}"
    if knob.type is int:
        return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1), "a whole number >= 1"
    if knob.name.startswith("cache_type"):
        return (lambda v: True), "a cache type"
    return (lambda v: v in knob.choices), f"one of {', '.join(knob.choices)}"


def knob_values(settings: Any) -> dict[str, list]:
    """Each knob's values from bench settings (an object with one attribute per knob: a value or a list)."""
    out = {}
    for name in KNOB_NAMES:
        value = getattr(settings, name)
        out[name] = list(value) if isinstance(value, (list, tuple)) else [value]
    return out


def varying_knobs(settings: Any) -> list[str]:
    """The knobs that are axes: given more than one value."""
    return [name for name, values in knob_values(settings).items() if len(values) > 1]


def knob_grid(settings: Any) -> list[Knobs]:
    """Every combination of the knobs' values, in bench.yaml's order (the last knob varies fastest)."""
    values = knob_values(settings)
    return [Knobs(**dict(zip(KNOB_NAMES, combo))) for combo in itertools.product(*values.values())]
