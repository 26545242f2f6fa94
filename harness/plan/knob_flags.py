"""Each knob (`harness.knobs`) spelled for one engine binary: which flag, which value syntax, found in the
binary's own `--help` (probed once per binary hash, `harness.engines.probe`), never from version tables. A flag
the help omits but the binary parses (ik's server `-op`; ik's llama-sweep-bench lists no options at all) is
found by asking the binary to parse it (`probe.accepts`, cached the same way). A knob the binary cannot take
raises `KnobUnsupported`, naming the engine, tool and knob.

What was found for mainline b11434 and ik 0.1.5 (docs/ENGINE_FLAGS.md §7, "Knobs"):

| knob | mainline llama-bench | mainline llama-server | ik llama-bench | ik llama-server, sweep-bench |
|---|---|---|---|---|
| threads | `-t N` | `-t N` | `-t N` (`-tgb N,M` with threads_batch) | `-t N` |
| threads_batch | — | `-tb N` | `-tgb N,M` | `-tb N` |
| batch, ubatch | `-b N`, `-ub N` | same | same | same |
| flash_attn | `-fa on\\|off` | `-fa on\\|off` | `-fa 1\\|0` | `-fa on\\|off` |
| op_offload | `-nopo 0\\|1` | `--op-offload` / `--no-op-offload` | — | `-op -1,1` / `-op -1,0` (not in its help) |
| load_mode | `-lm mmap\\|none\\|mmap+mlock` | same | `-mmp 1\\|0`, no mlock | (none) / `--no-mmap` / `--mlock` |
| cache_type_k / _v | `-ctk T` / `-ctv T` | same, checked against its "allowed values" | same | same |
| mla | — | — | `-mla N` | `-mla N` |
| swa_full | — | `--swa-full` (off: no flag) | — | — |
| attn_max_batch_mib | — | — | `-amb N` | `-amb N` |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.engines import probe
from harness.errors import UserError
from harness.knobs import Knobs


class KnobUnsupported(UserError):
    """A knob value one engine's tool cannot take; `knob` names it."""

    def __init__(self, message: str, knob: str = ""):
        super().__init__(message)
        self.knob = knob


@dataclass(frozen=True)
class ToolSyntax:
    """What one engine binary parses: its `--help`, and a probe for flags its help leaves out."""

    engine: str                     # the engine's name, for messages
    dialect: str
    tool: str
    help_text: str
    accepts: Callable[[str, str | None], bool] = lambda flag, value: False

    def has(self, flag: str) -> bool:
        return re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", self.help_text, re.MULTILINE) is not None

    def takes(self, flag: str, sample: str | None = None) -> bool:
        """Whether the binary parses `flag` (with `sample` as its value): listed in its help, else accepted when
        tried (ik's llama-sweep-bench prints no options at all, its server omits some)."""
        return self.has(flag) or self.accepts(flag, sample)

    def help_entry(self, flag: str) -> str:
        """The help text of `flag`: its line and the indented lines after it, up to the next flag."""
        lines = self.help_text.splitlines()
        for i, line in enumerate(lines):
            if re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", line):
                entry = [line]
                for more in lines[i + 1:]:
                    if not more.strip() or re.match(r"^\s{0,4}-", more):
                        break
                    entry.append(more)
                return "\n".join(entry)
        return ""

    def allowed_values(self, flag: str) -> list[str] | None:
        """The values its help lists for `flag` ("allowed values: f32, f16, ..."), or None when it lists none."""
        m = re.search(r"allowed values:\s*([^\n(]+)", self.help_entry(flag))
        return [v.strip() for v in m.group(1).split(",") if v.strip()] if m else None

    def what(self) -> str:
        return f"engine {self.engine} ({self.dialect}) {self.tool}"


def tool_syntax(engine, tool: str) -> ToolSyntax:
    """The syntax of `engine`'s `tool` (an `harness.engines.discover.Engine`), from its probed help."""
    binary = engine.tool(tool)
    return ToolSyntax(engine.name, engine.dialect, tool, probe.help_text(binary),
                      lambda flag, value: probe.accepts(binary, flag, value))


Render = Callable[[Any, ToolSyntax], "list[str] | None"]  # None: this spelling cannot say that value


@dataclass(frozen=True)
class Spelling:
    flag: str                       # the flag that selects this spelling when the binary takes it
    render: Render
    sample: str | None = None       # a value to try `flag` with when the help omits it (None: a bare flag)

    def available(self, syntax: ToolSyntax) -> bool:
        return syntax.takes(self.flag, self.sample)


def _value(flag: str) -> Spelling:
    return Spelling(flag, lambda v, s: [flag, str(v)], "1")


def _cache_type(flag: str) -> Spelling:
    def render(value: str, syntax: ToolSyntax) -> list[str]:
        allowed = syntax.allowed_values(flag)
        if allowed is not None and value not in allowed:
            raise KnobUnsupported(f"{syntax.what()} has no KV cache type {value!r} ({flag}); its --help allows: "
                                  f"{', '.join(allowed)}", "cache_type_k" if flag == "-ctk" else "cache_type_v")
        return [flag, value]
    return Spelling(flag, render, "f16")


def _flash_attn(value: bool, syntax: ToolSyntax) -> list[str]:
    # mainline (both tools) and ik's server take on|off; ik's llama-bench parses a bool, where "on" means 0
    entry = syntax.help_entry("-fa")
    if re.search(r"\bon\b", entry) or "0|1" not in entry:
        return ["-fa", "on" if value else "off"]
    return ["-fa", "1" if value else "0"]


_MAINLINE_LOAD_MODE = {"mmap": "mmap", "no-mmap": "none", "mlock": "mmap+mlock"}


def _ik_server_load_mode(value: str, syntax: ToolSyntax) -> list[str] | None:
    if value == "mlock":
        return ["--mlock"] if syntax.takes("--mlock") else None
    return ["--no-mmap"] if value == "no-mmap" else []  # mmap is the default and has no flag


SPELLINGS: dict[str, list[Spelling]] = {
    "batch": [_value("-b")],
    "ubatch": [_value("-ub")],
    "cache_type_k": [_cache_type("-ctk")],
    "cache_type_v": [_cache_type("-ctv")],
    "flash_attn": [Spelling("-fa", _flash_attn, "on")],
    "op_offload": [  # first the bench's (its help also names --no-op-offload, taking 0|1)
        Spelling("-nopo", lambda v, s: ["-nopo", "0" if v else "1"], "0"),                       # mainline bench
        Spelling("--op-offload", lambda v, s: ["--op-offload" if v else "--no-op-offload"]),     # mainline server
        Spelling("-op", lambda v, s: ["-op", "-1,1" if v else "-1,0"], "-1,1"),                 # ik: all ops
    ],
    "load_mode": [
        Spelling("-lm", lambda v, s: ["-lm", _MAINLINE_LOAD_MODE[v]], "mmap"),                   # mainline
        Spelling("-mmp", lambda v, s: None if v == "mlock" else ["-mmp", "1" if v == "mmap" else "0"], "1"),
        Spelling("--no-mmap", _ik_server_load_mode),                                            # ik server
    ],
    "mla": [Spelling("-mla", lambda v, s: ["-mla", str(v)], "3")],                              # ik only
    "swa_full": [Spelling("--swa-full", lambda v, s: ["--swa-full"] if v else [])],           # mainline server
    "attn_max_batch_mib": [_value("-amb")],                                                     # ik only
    "threads_batch": [
        Spelling("-tb", lambda v, s: ["-tb", str(v)], "1"),
        Spelling("-tgb", lambda v, s: [], "1,1"),  # ik llama-bench: given with the threads as -tgb N,M (below)
    ],
}
# the order of the knob arguments on a command line: every knob of `harness.knobs.KNOB_TABLE` (threads is spelled
# with the thread count, `_threads`); kept as it was, so that the argument lists stay the same
_ORDER = ("cache_type_k", "cache_type_v", "threads", "threads_batch", "batch", "ubatch", "flash_attn",
          "op_offload", "load_mode", "mla", "swa_full", "attn_max_batch_mib")


def _spell(name: str, value: Any, syntax: ToolSyntax) -> list[str]:
    candidates = SPELLINGS[name]
    for spelling in candidates:
        if spelling.available(syntax):
            args = spelling.render(value, syntax)
            if args is None:
                raise KnobUnsupported(f"{syntax.what()} cannot set {name}={_shown(value)}: its {spelling.flag} "
                                      "does not take that value", name)
            return args
    if all(spelling.render(value, syntax) == [] for spelling in candidates):
        return []  # a value every spelling leaves unsaid (swa_full off) needs no flag
    flags = ", ".join(s.flag for s in candidates)
    raise KnobUnsupported(f"{syntax.what()} cannot set {name}={_shown(value)}: none of {flags} is in its --help "
                          "or parsed by it", name)


def _shown(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _threads(knobs: Knobs, threads: int, syntax: ToolSyntax) -> list[str]:
    if knobs.threads_batch is not None and not syntax.takes("-tb", "1") and syntax.takes("-tgb", "1,1"):
        return ["-tgb", f"{threads},{knobs.threads_batch}"]  # ik llama-bench: -t and -tgb would be two tests
    if not syntax.takes("-t", "1"):
        raise KnobUnsupported(f"{syntax.what()} cannot set threads: no -t in its --help", "threads")
    return ["-t", str(threads)]


def _knob_arg(name: str, knobs: Knobs, threads: int, syntax: ToolSyntax) -> list[str]:
    if name == "threads":
        return _threads(knobs, threads, syntax)
    value = getattr(knobs, name)
    return [] if value is None else _spell(name, value, syntax)


def knob_args(knobs: Knobs, threads: int, syntax: ToolSyntax) -> list[str]:
    """The arguments that set `knobs` on this binary; `threads` is the count it runs with (the knob's value,
    else the CPU budget's default), always passed. Raises KnobUnsupported."""
    return [arg for name in _ORDER for arg in _knob_arg(name, knobs, threads, syntax)]


def knob_problems(grid: list[Knobs], threads: int, syntax: ToolSyntax) -> list[KnobUnsupported]:
    """Why knob values of `grid` cannot be set on this binary, the first reason per knob (empty: all can)."""
    problems: dict[str, KnobUnsupported] = {}
    for knobs in grid:
        for name in _ORDER:
            try:
                _knob_arg(name, knobs, threads, syntax)
            except KnobUnsupported as exc:
                problems.setdefault(exc.knob, exc)
    return list(problems.values())
