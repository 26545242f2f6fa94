"""Compile a placement into the exact arguments of one engine (mainline or ik) and tool (llama-bench,
llama-server, llama-sweep-bench).

1. Layers: where each layer runs becomes `-ngl` (mainline counts the output layer, ik does not).
2. Tensors whose placement differs from their layer's device become overrides. A native short flag
   (`-cmoe`, `-ncmoe N`) is used only where the regex that flag generates *on this engine and tool* selects
   exactly those tensors of this model; otherwise anchored `-ot` patterns are emitted, each checked to match
   exactly the intended tensors and no other.
3. The devices: `-dev NAME[,NAME]` where the tool has it, `--rpc host:port[,host:port]` for RPC devices, `-ts`
   for several accelerators (`harness.plan.device_flags`), `--fit off` where an engine would otherwise re-fit
   the placement on its own.

Which flags a binary has comes from its `--help` (probed once per binary hash), never from version tables; what
differs from tool to tool (separators, fit flags, what it cannot place) is its `harness.tools.Tool`'s.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from harness.errors import UserError
from harness.models.inspect import ModelInfo
from harness.plan.device_flags import device_args, layer_split, rpc_args
from harness.plan.placement import CPU, Placement, is_accelerator, loaded_tensors, runs_on
from harness.tools import Tool, tool_named

# The override regexes mainline's native MoE flags generate (common/common.h, LLM_FFN_EXPS_REGEX and
# llm_ffn_exps_block_regex). Applied to the model's names to decide whether a native flag equals a
# placement exactly.
_MAINLINE_LAYER_EXPS = r"blk\.{layer}\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_MAINLINE_ALL_EXPS = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


@dataclass(frozen=True)
class Target:
    """One engine binary as a placement's destination."""

    dialect: str                    # "mainline" or "ik"
    tool: str                       # llama-bench, llama-server, llama-sweep-bench
    help_text: str                  # the binary's --help, for what it supports
    device: str                     # the accelerator's device name, for -dev: CUDA0, RPC0
    buffer_type: str                # its buffer type name, for -ot: CUDA0, RPC0[127.0.0.1:50052]
    rpc: tuple[str, ...] = ()       # RPC servers (host:port) to register
    accepted: frozenset[str] = frozenset()  # flags the binary parses although its --help omits them
    more: tuple[tuple[str, str], ...] = ()  # (device, buffer type) of accel1, accel2, ...

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.device, *(d for d, _ in self.more))

    @property
    def buffer_types(self) -> tuple[str, ...]:
        """accel0's, accel1's, ... buffer type (their -ot names and the names of their load report lines)."""
        return (self.buffer_type, *(b for _, b in self.more))

    @property
    def engine_tool(self) -> Tool:
        return tool_named(self.tool)

    def has(self, flag: str) -> bool:
        if flag in self.accepted:
            return True
        return re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", self.help_text, re.MULTILINE) is not None


@dataclass
class CompiledFlags:
    args: list[str]
    native: list[str] = field(default_factory=list)      # which native shortcuts were used
    patterns: dict[str, list[str]] = field(default_factory=dict)  # buffer type -> -ot patterns


def gpu_layers_flag(placement: Placement, model: ModelInfo, dialect: str) -> int:
    """The -ngl value that makes exactly the placement's layers run on the accelerator."""
    n = len(placement.layer_devices)
    on_accel = [is_accelerator(d) for d in placement.layer_devices]
    k = sum(on_accel)
    if on_accel != [False] * (n - k) + [True] * k:
        raise UserError(f"{placement.describe()}: layers on the accelerator must be the last ones (-ngl offloads "
                        "from the end); hold weights of other layers in RAM with tensor overrides instead")
    output_on_accel = is_accelerator(placement.output_device)
    if dialect == "mainline":
        # mainline: i_gpu_start = n_layer + 1 - ngl; index n_layer is the output layer, offloaded first
        if not output_on_accel and k:
            raise UserError(f"{placement.describe()}: mainline offloads the output layer before any other layer")
        return k + 1 if output_on_accel else 0
    # ik: i_gpu_start = n_layer - ngl; the output layer goes to the accelerator when ngl > n_layer
    if k == n:
        return n + 1 if output_on_accel else n
    if output_on_accel:
        raise UserError(f"{placement.describe()}: ik offloads the output layer only with every layer")
    return k


def exact_pattern(names: list[str], all_names: list[str] | None = None) -> str:
    """One anchored regex matching exactly `names` (grouped by layer), for -ot. Given `all_names`, layers
    whose every tensor is wanted are written as whole layers (`^blk\\.(?:4|5)\\.`)."""
    whole: list[int] = []
    if all_names is not None:
        wanted = set(names)
        per_layer: dict[int, set[str]] = defaultdict(set)
        for name in all_names:
            m = re.match(r"^blk\.(\d+)\.", name)
            if m:
                per_layer[int(m.group(1))].add(name)
        whole = sorted(layer for layer, members in per_layer.items() if members <= wanted)
        names = [n for n in names if not (m := re.match(r"^blk\.(\d+)\.", n)) or int(m.group(1)) not in whole]
    by_stem: dict[str, set[int | None]] = defaultdict(set)
    for name in names:
        m = re.match(r"^blk\.(\d+)\.(.+)$", name)
        if m:
            by_stem[m.group(2)].add(int(m.group(1)))
        else:
            by_stem[name].add(None)
    by_layers: dict[tuple, list[str]] = defaultdict(list)
    for stem, layers in by_stem.items():
        by_layers[tuple(sorted(layers, key=lambda x: -1 if x is None else x))].append(stem)
    parts = []
    if whole:
        layer_re = "|".join(str(i) for i in whole)
        parts.append(f"^blk\\.(?:{layer_re})\\." if len(whole) > 1 else f"^blk\\.{layer_re}\\.")
    for layers, stems in sorted(by_layers.items(), key=lambda kv: str(kv[0])):
        stem_re = "|".join(re.escape(s) for s in sorted(stems))
        stem_re = f"(?:{stem_re})" if len(stems) > 1 else stem_re
        if layers == (None,):
            parts.append(f"^{stem_re}$")
        else:
            layer_re = "|".join(str(i) for i in layers)
            layer_re = f"(?:{layer_re})" if len(layers) > 1 else layer_re
            parts.append(f"^blk\\.{layer_re}\\.{stem_re}$")
    return parts[0] if len(parts) == 1 else "|".join(f"(?:{p})" for p in parts)


def _matches(pattern: str, names: list[str]) -> set[str]:
    regex = re.compile(pattern)
    return {n for n in names if regex.search(n)}


def _native_expert_flag(target: Target, wanted: set[str], all_names: list[str], n_layers: int) -> list[str] | None:
    """-cmoe / -ncmoe N when that flag, on this engine and tool, selects exactly `wanted`."""
    if not wanted or target.dialect != "mainline":
        # ik's loader turns -cmoe/-ncmoe into its own layer counting (last-N in the server); its -ot is
        # always exact, so ik gets -ot patterns
        return None
    layer_tmpl, all_re = _MAINLINE_LAYER_EXPS, _MAINLINE_ALL_EXPS
    if _matches(all_re, all_names) == wanted and target.has("-cmoe"):
        return ["-cmoe"]
    # -ncmoe N is first-N in mainline, bench and server alike
    if not target.has("-ncmoe"):
        return None
    for n in range(1, n_layers + 1):
        selected = set().union(*(_matches(layer_tmpl.format(layer=i), all_names) for i in range(n)))
        if selected == wanted:
            return ["-ncmoe", str(n)]
        if not selected <= wanted:
            return None
    return None


def ngl_places_weights(target: Target) -> bool:
    """ik on an RPC device (a build without a GPU) assigns layers to the RPC device but allocates their weights
    on the CPU (it mixes a device position with a device index; docs/ENGINE_FLAGS.md section 1): there only
    -ot moves weights, so every accelerator tensor gets an explicit override."""
    return not (target.dialect == "ik" and target.buffer_type.startswith("RPC"))


def compile_flags(placement: Placement, model: ModelInfo, target: Target) -> CompiledFlags:
    """The arguments (besides -m, prompt sizes and such) that realize `placement` on `target`."""
    tool = target.engine_tool  # an unknown tool's name raises UserError
    args = [*rpc_args(target), *device_args(target)]
    if placement.deferred:
        margin = str(placement.params.get("margin_mib", 1024))
        return CompiledFlags(args + tool.fit_args(target.dialect, margin, target.has), native=["fit"])

    names = [t.name for t in loaded_tensors(model)]
    places = ngl_places_weights(target)
    ts_args, layer_devices, output_device = layer_split(placement, target, places)
    if places:
        args += ["-ngl", str(gpu_layers_flag(placement, model, target.dialect)), *ts_args]
    else:
        problem = tool.rpc_placement_error(target.dialect)
        if problem:
            raise UserError(problem)
        args += ["-ngl", "999"]  # without it ik's server crashes when -ot names an RPC buffer
    wanted: dict[str, set[str]] = defaultdict(set)
    for name in names:
        device = placement.tensor_devices[name]
        if device != runs_on(layer_devices, output_device, name):
            wanted[device].add(name)

    compiled = CompiledFlags(args)
    rules: list[str] = []
    cpu_wanted = wanted.pop(CPU, set())
    native = None if wanted else _native_expert_flag(target, cpu_wanted, names, model.n_layers)
    if native:
        compiled.native = native
        args += native
    elif cpu_wanted:
        rules.append(_checked_rule(sorted(cpu_wanted), names, "CPU"))
    for device, tensors in sorted(wanted.items()):
        buffer_type = target.buffer_types[int(device.removeprefix("accel"))]
        rules.append(_checked_rule(sorted(tensors), names, buffer_type))
    if rules and not target.has("-ot"):
        raise UserError(f"this {target.dialect} {target.tool} has no -ot/--override-tensor to place tensors with")
    for rule in rules:
        compiled.patterns.setdefault(rule.rsplit("=", 1)[1], []).append(rule.rsplit("=", 1)[0])
    if rules:
        args += ["-ot", tool.override_separator(target.dialect).join(rules)]
    args += tool.keep_placement_args(target.dialect, target.has)
    return compiled


def _checked_rule(tensors: list[str], all_names: list[str], buffer_type: str) -> str:
    pattern = exact_pattern(tensors, all_names)
    if _matches(pattern, all_names) != set(tensors):  # never emit a pattern that catches anything else
        raise AssertionError(f"pattern {pattern!r} does not match exactly the intended tensors")
    if "," in pattern or ";" in pattern:
        raise AssertionError(f"pattern {pattern!r} contains a separator")
    return f"{pattern}={buffer_type}"

