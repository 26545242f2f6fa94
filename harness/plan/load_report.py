"""What an engine says it did when it loaded a model: its load report, parsed from its log.

`parse_load_log(text)` reads the load report of llama.cpp ("mainline") and ik_llama.cpp from a log: llama-bench
run with `-v` (without it both engines' llama-bench print no load report), llama-server (mainline prints the
report only at `-lv 4` or above; ik always), ik's llama-sweep-bench. It returns one `EngineReport` per model
load, in order; `parse_report(text)` returns the last real one (see there). Unknown lines are ignored.

Sizes are printed in MiB with two decimals, so every byte count parsed here is exact only to +-0.005 MiB.

`engine_settings(text)` reads the settings the engine says it ran with (context, batch, micro-batch, flash
attention, load mode, threads), to check the knobs' flags against. What the report should say for a placement
is predicted in `harness.plan.model_buffers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from harness.units import MIB


# mainline llama-server prefixes each line with "0.00.081.523 I "
_SERVER_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [A-Z] (?:\S{3,4}  ?)?")
_LOAD_START = re.compile(r"llama_model_loader: loaded meta data with")
_CTX_START = re.compile(r"llama_context: constructing llama_context|llama_init_from_model: n_ctx\s+=")
_MODEL_BUF = re.compile(r"^(?:llm_)?load_tensors:\s+(?P<name>\S+) (?:model )?buffer size =\s*(?P<mib>[\d.]+) MiB")
_KV_BUF = re.compile(r"(?P<name>\S+) KV buffer size =\s*(?P<mib>[\d.]+) MiB")
_RS_BUF = re.compile(r"(?P<name>\S+) RS buffer size =\s*(?P<mib>[\d.]+) MiB")  # mainline's recurrent state
_COMPUTE_BUF = re.compile(r"(?P<name>\S+) compute buffer size =\s*(?P<mib>[\d.]+) MiB")
_OUTPUT_BUF = re.compile(r"(?P<name>\S+)\s+output buffer size =\s*(?P<mib>[\d.]+) MiB")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_ASSIGNED = re.compile(r"load_tensors: layer\s+(\d+) assigned to device ([^,\s]+)")     # mainline, debug level
_IK_DEFAULT_DEVICE = re.compile(r"Setting default device in layer\s+(\d+) to (\d+)")   # ik: a position in its device list
_KV_LAYER = re.compile(r"llama_kv_cache: layer\s+(\d+): dev = (\S+)")                  # mainline, debug level
_OVERRIDE = re.compile(r"^[Tt]ensor (\S+) \(.*\) buffer type overr?idd?en to (\S+)")   # mainline "overridden", ik "overriden"
_LOAD_MODE = re.compile(r"load_mode = ([\w+]+)")
_USING_DEVICE = re.compile(r"(?:llama_prepare_model_devices: using device (\S+) \(|^\S+: using device (\S+) - )")
_IK_REPACKED = re.compile(r"Repacked (\d+) tensors")
# the backend segments of the graph the engine reserved (a micro-batch of n_ubatch tokens): mainline
# `sched_reserve: graph: nodes = 449, splits = 18, ...`, ik `llama_init_from_model: graph splits = 18`
_GRAPH_SPLITS = re.compile(r"(?:graph: nodes = \d+, splits = |graph splits = )(\d+)")
_FIT = re.compile(
    r"^(common_params_fit_impl|common_fit_params|common_memory_breakdown_print|common_init_: fitting"
    r"|llama_params_fit|Memory required for model|Memory available on all devices|Adding experts CPU overrides"
    r"|Memory use in device|Setting layer \d+ to device|Unable to auto-fit|Required memory|No MoE tensors"
    r"|Not enough memory|Free memory \d+ MiB)")

_HOST_SUFFIXES = ("_Host",)
_DEVICE_SUFFIXES = ("_Mapped", "_REPACK", "_Split")


def device_of_buffer(name: str) -> str:
    """The device a buffer (type) name lives on: "CPU" for CPU, CPU_Mapped, CPU_REPACK and pinned host buffers
    (CUDA_Host, ...); otherwise the name without a _Mapped/_Split suffix ("CUDA0", "RPC0[127.0.0.1:50052]")."""
    if name.startswith("CPU") or name.endswith(_HOST_SUFFIXES):
        return "CPU"
    for suffix in _DEVICE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _by_device(buffers: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, n_bytes in buffers.items():
        device = device_of_buffer(name)
        out[device] = out.get(device, 0) + n_bytes
    return out


def _peak(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for name, n_bytes in d.items():
            out[name] = max(out.get(name, 0), n_bytes)
    return out


@dataclass
class ContextReport:
    """The buffers of one llama_context (llama-bench makes one per test, llama-server one per model)."""

    kv_buffers: dict[str, int] = field(default_factory=dict)
    rs_buffers: dict[str, int] = field(default_factory=dict)       # mainline's recurrent state (ik: in KV)
    compute_buffers: dict[str, int] = field(default_factory=dict)
    output_buffers: dict[str, int] = field(default_factory=dict)
    kv_layer_devices: dict[int, str] = field(default_factory=dict)  # mainline at debug level
    graph_splits: int | None = None        # segments of the reserved (worst-case micro-batch) graph


@dataclass
class EngineReport:
    """One model load as the engine reported it. Byte counts are parsed from MiB with 2 decimals."""

    model_buffers: dict[str, int] = field(default_factory=dict)   # buffer name -> bytes, e.g. {"CPU_Mapped": ...}
    contexts: list[ContextReport] = field(default_factory=list)
    layer_devices: dict[int, str] = field(default_factory=dict)   # mainline -v; index n_layer is the output layer
    ik_layer_device_index: dict[int, int] = field(default_factory=dict)  # ik "Setting default device in layer"
    offloaded_layers: int | None = None
    offloadable_layers: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)       # tensor -> buffer type it was overridden to
    fit_lines: list[str] = field(default_factory=list)            # what automatic fitting said, verbatim
    load_mode: str | None = None                                  # mainline: "mmap", "none", ...
    devices: list[str] = field(default_factory=list)              # "using device ..." (ik also lists "CPU")
    repacked_tensors: int | None = None                           # ik -rtr: "Repacked N tensors"

    @property
    def complete(self) -> bool:
        """True when the engine printed model buffers with some bytes (a no-alloc dry run prints zeros)."""
        return sum(self.model_buffers.values()) > 0

    @property
    def model_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.model_buffers)

    # contexts are created one at a time (llama-bench frees each before the next): the peak is the max per buffer
    @property
    def kv_buffers(self) -> dict[str, int]:
        return _peak(c.kv_buffers for c in self.contexts)

    @property
    def rs_buffers(self) -> dict[str, int]:
        return _peak(c.rs_buffers for c in self.contexts)

    @property
    def compute_buffers(self) -> dict[str, int]:
        return _peak(c.compute_buffers for c in self.contexts)

    @property
    def output_buffers(self) -> dict[str, int]:
        return _peak(c.output_buffers for c in self.contexts)

    @property
    def kv_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.kv_buffers)

    @property
    def rs_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.rs_buffers)

    @property
    def state_bytes_by_device(self) -> dict[str, int]:
        """KV cache and recurrent state together per device: the memory that grows with the context (what
        `harness.plan.memory` predicts as its KV part)."""
        return _sum_parts(self.kv_bytes_by_device, self.rs_bytes_by_device)

    @property
    def compute_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.compute_buffers)

    @property
    def output_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.output_buffers)

    @property
    def graph_splits(self) -> int | None:
        """The backend segments of the last context's reserved graph (None: not logged)."""
        return next((c.graph_splits for c in reversed(self.contexts) if c.graph_splits is not None), None)

    def total_bytes_by_device(self) -> dict[str, int]:
        """Model + KV + recurrent state + compute + output buffers per device: what the engine allocated (or
        mapped)."""
        return _sum_parts(self.model_bytes_by_device, self.kv_bytes_by_device, self.rs_bytes_by_device,
                          self.compute_bytes_by_device, self.output_bytes_by_device)


def _sum_parts(*parts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for device, n_bytes in part.items():
            out[device] = out.get(device, 0) + n_bytes
    return out


def _mib(text: str) -> int:
    return round(float(text) * MIB)


def parse_load_log(text: str) -> list[EngineReport]:
    """Every model load in an engine log, in order (llama-bench reloads the model whenever a test's model
    parameters differ from the previous test's; llama-server loads it once). Fit messages and device lines
    printed before a load (mainline fits before loading; ik names its devices first) belong to the load that
    follows them."""
    loads: list[EngineReport] = []
    pending_fit: list[str] = []
    pending_devices: list[str] = []  # ik names its devices before the loader starts
    current: EngineReport | None = None
    ctx: ContextReport | None = None
    for raw in text.splitlines():
        line = _SERVER_PREFIX.sub("", raw.rstrip())
        if _LOAD_START.search(line):
            current, ctx = EngineReport(fit_lines=pending_fit, devices=pending_devices), None
            pending_fit, pending_devices = [], []
            loads.append(current)
            continue
        if _FIT.match(line):
            if current is not None and not current.model_buffers:
                current.fit_lines.append(line)
            else:
                pending_fit.append(line)
            continue
        if m := _USING_DEVICE.search(line):
            if current is not None and not current.model_buffers:
                current.devices.append(m[1] or m[2])
            else:
                pending_devices.append(m[1] or m[2])
            continue
        if current is None:
            continue
        if _CTX_START.search(line):
            ctx = ContextReport()
            current.contexts.append(ctx)
            continue
        if m := _MODEL_BUF.match(line):
            current.model_buffers[m["name"]] = current.model_buffers.get(m["name"], 0) + _mib(m["mib"])
        elif m := _KV_BUF.search(line):
            ctx = _context(current, ctx)
            ctx.kv_buffers[m["name"]] = ctx.kv_buffers.get(m["name"], 0) + _mib(m["mib"])
        elif m := _RS_BUF.search(line):
            ctx = _context(current, ctx)
            ctx.rs_buffers[m["name"]] = ctx.rs_buffers.get(m["name"], 0) + _mib(m["mib"])
        elif m := _COMPUTE_BUF.search(line):
            ctx = _context(current, ctx)
            ctx.compute_buffers[m["name"]] = max(ctx.compute_buffers.get(m["name"], 0), _mib(m["mib"]))
        elif m := _OUTPUT_BUF.search(line):
            ctx = _context(current, ctx)
            ctx.output_buffers[m["name"]] = max(ctx.output_buffers.get(m["name"], 0), _mib(m["mib"]))
        elif m := _OFFLOADED.search(line):
            current.offloaded_layers, current.offloadable_layers = int(m[1]), int(m[2])
        elif m := _ASSIGNED.search(line):
            current.layer_devices[int(m[1])] = m[2]
        elif m := _IK_DEFAULT_DEVICE.search(line):
            current.ik_layer_device_index[int(m[1])] = int(m[2])
        elif m := _KV_LAYER.search(line):
            ctx = _context(current, ctx)
            ctx.kv_layer_devices[int(m[1])] = m[2]
        elif m := _OVERRIDE.match(line):
            current.overrides[m[1]] = m[2]
        elif m := _GRAPH_SPLITS.search(line):
            ctx = _context(current, ctx)
            ctx.graph_splits = int(m[1])
        elif m := _IK_REPACKED.search(line):
            current.repacked_tensors = int(m[1])
        elif current.load_mode is None and (m := _LOAD_MODE.search(line)) and "load_tensors" in line:
            current.load_mode = m[1]
    if pending_fit and loads:
        loads[-1].fit_lines.extend(pending_fit)
    return loads


def _context(report: EngineReport, ctx: ContextReport | None) -> ContextReport:
    if ctx is None:
        ctx = ContextReport()
        report.contexts.append(ctx)
    return ctx


def parse_report(text: str) -> EngineReport | None:
    """The last complete model load in the log (one that printed non-zero model buffers), or None. Mainline's
    fit measures with no-alloc dry-run loads (logged at `-v`, all buffers 0.00 MiB); their fit lines are
    gathered into the report of the real load that follows them."""
    loads = parse_load_log(text)
    chosen = max((i for i, r in enumerate(loads) if r.complete), default=None)
    if chosen is None:
        return None
    first = chosen
    while first > 0 and not loads[first - 1].complete:
        first -= 1
    report = loads[chosen]
    report.fit_lines = [line for r in loads[first:chosen + 1] for line in r.fit_lines]
    return report


def agrees(predicted_mib: float, actual_mib: float, *, rel: float = 0.02, abs_mib: float = 1.0) -> bool:
    """A prediction agrees with what the engine reported when it is within `rel` (2%) of it or `abs_mib` (1 MiB)."""
    diff = abs(predicted_mib - actual_mib)
    return diff <= abs_mib or diff <= rel * abs(actual_mib)


# the settings engines log: mainline `llama_context: n_ubatch = 512`, ik `llama_init_from_model: n_ubatch = 512`
_CONTEXT_SETTING = re.compile(r"^(?:llama_context|llama_init_from_model|llama_new_context_with_model):\s+"
                              r"(n_ctx|n_batch|n_ubatch|flash_attn)\s+=\s*(\S+)")
_SYSTEM_INFO = re.compile(r"system_info: n_threads = (\d+)(?: \(n_threads_batch = (\d+)\))?")
_THREADPOOL = re.compile(r"threadpool init, n_threads = (\d+)")
_IK_SYSTEM_INFO = re.compile(r"system info \|.* n_threads=(\d+) n_threads_batch=(-?\d+)")  # ik's server


def engine_settings(text: str) -> dict[str, str]:
    """The settings the engine logged, the last value of each: `n_ctx`, `n_batch`, `n_ubatch`, `flash_attn`
    (mainline enabled/disabled, ik 1/0), `load_mode` (mainline: mmap, none, mmap+mlock, ...), `n_threads` and
    `n_threads_batch` (the system_info line; mainline's server prints it at `-lv 4`, its threadpool line
    always; ik's server its `system info | ... n_threads=N n_threads_batch=M`, M = -1 read as N). Keys the log
    does not show are absent. llama-bench reports its own settings in its JSON."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = _SERVER_PREFIX.sub("", raw.rstrip())
        if m := _CONTEXT_SETTING.match(line):
            out[m[1]] = m[2]
        elif (m := _LOAD_MODE.search(line)) and "load_tensors" in line:
            out["load_mode"] = m[1]
        elif m := _SYSTEM_INFO.search(line):
            out["n_threads"] = m[1]
            if m[2]:
                out["n_threads_batch"] = m[2]
        elif m := _IK_SYSTEM_INFO.search(line):
            out["n_threads"] = m[1]
            out["n_threads_batch"] = m[1] if m[2] == "-1" else m[2]  # -1: the same as n_threads
        elif m := _THREADPOOL.search(line):
            out.setdefault("n_threads", m[1])
    return out
