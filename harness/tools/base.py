"""`Tool`: one engine tool (llama-bench, llama-server, llama-sweep-bench) as moebench uses it. Each subclass owns,
for its tool only, what was once an if-chain on the tool's name: its argument lists, the context it allocates,
what makes it log its load report, its list and override separators, its fit flags, what it cannot place, how
one of its measured tests maps to the performance model's test, parsing its output and measuring one process.

A tool sees a configuration through `PlannedRun` (what `harness.plan.planner.Configuration` is), so this
package imports neither the planner nor the runner (see `harness.tools`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar, Protocol

from harness.errors import UserError
from harness.tools.measurement import BenchTest, BenchTests, ProcessSettings

SERVER_PORT = "SERVER_PORT"  # what `moebench plan` shows for a port chosen when the process starts

RowTest = tuple[str, int, int]  # a modelled test as a row gives it: kind (pp or tg), tokens, n_depth
HasFlag = Callable[[str], bool]  # whether the tool's binary takes a flag (its --help, or a probe)


class _Engine(Protocol):
    dialect: str

    def tool(self, tool: str) -> Path: ...


class _ModelInfo(Protocol):
    vocab_size: int


class _Model(Protocol):
    path: Path
    info: _ModelInfo


class _Syntax(Protocol):
    def has(self, flag: str) -> bool: ...


class PlannedRun(Protocol):
    """A planned configuration as its tool needs it: the engine (dialect, binaries), the model, and the
    configuration's own arguments (knobs, placement, bench.yaml's engine_args), what the binary parses."""

    engine: _Engine
    model: _Model
    knob_args: list[str]
    engine_args: list[str]
    syntax: _Syntax | None

    @property
    def placement_args(self) -> list[str]: ...


class Tool:
    """One engine tool. The defaults are the servers' (llama-server, llama-sweep-bench); llama-bench overrides
    what differs."""

    name: ClassVar[str] = ""
    list_separator: ClassVar[str] = ","        # within one -dev or -ts list
    may_parse_unlisted_flags: ClassVar[bool] = True  # a flag its --help omits may still parse (ik's server: -ot)

    def binary(self, conf: PlannedRun) -> Path:
        return conf.engine.tool(self.name)

    def override_separator(self, dialect: str) -> str:
        """Between the rules of one `-ot`."""
        return ","

    def context_tokens(self, bench: BenchTests) -> int:
        """The context the engine allocates, before padding."""
        return bench.ctx

    def log_args(self, dialect: str, syntax: _Syntax | None) -> list[str]:
        """What makes the engine print its load report (none: it always does)."""
        return []

    def args(self, conf: PlannedRun) -> list[str]:
        """Knob arguments, placement flags, bench.yaml's engine_args (they can override), the log arguments."""
        return [*conf.knob_args, *conf.placement_args, *conf.engine_args,
                *self.log_args(conf.engine.dialect, conf.syntax)]

    def fit_args(self, dialect: str, margin_mib: str, has: HasFlag) -> list[str]:
        """The engine fits the placement itself, leaving `margin_mib` free on each device."""
        if dialect == "mainline":
            return ["--fit", "on", "--fit-target", margin_mib]
        return self._ik_fit(has) + (["--fit-margin", margin_mib] if has("--fit-margin") else [])

    def _ik_fit(self, has: HasFlag) -> list[str]:
        if not has("--fit"):
            raise UserError(f"this ik_llama.cpp {self.name} has no --fit")
        return ["--fit"]

    def keep_placement_args(self, dialect: str, has: HasFlag) -> list[str]:
        """What stops the engine from re-fitting a placement on its own."""
        return []

    def rpc_placement_error(self, dialect: str) -> str | None:
        """Why this tool cannot place weights on an RPC device where only `-ot` can put them there (ik), or
        None when it can."""
        return None

    def model_depth(self, kind: str, depth: int, bench: BenchTests) -> int:
        """The tokens in the cache when a measured test (`kind` pp or tg, at `depth`) runs, as the performance
        model should see it."""
        return depth

    def row_tests(self, bench: BenchTests, ubatch: int, n_ctx: int) -> list[RowTest]:
        """The modelled tests its rows will have, as (kind `pp` or `tg`, tokens, the row's `n_depth`), for the plan
        to predict once (`harness.perf.configs.planned_tests`): every prompt size and every generation size at
        depth 0 (a server's concurrent requests share its generation test's). `ubatch`: the micro-batch asked
        for (the knob, else the engine's default); `n_ctx`: the context the engine allocates, padded."""
        return [("pp", p, 0) for p in bench.prompt_tokens if p] + [("tg", g, 0) for g in bench.gen_tokens if g]

    def commands(self, conf: PlannedRun, bench: BenchTests, *, port: int | str = SERVER_PORT) -> list[list[str]]:
        """Every argument list one process round of `conf` runs, in order."""
        raise NotImplementedError

    def measure(self, conf: PlannedRun, settings: ProcessSettings, log_path: Path
                ) -> list[tuple[BenchTest, list[str]]]:
        """One process round of `conf`: each measured test with the exact argument list that ran; raises
        `harness.tools.measurement.RunFailed`."""
        raise NotImplementedError
