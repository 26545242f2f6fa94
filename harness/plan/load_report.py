"""What an engine says it did when it loaded a model, and what it should say for a given placement.

`parse_load_log(text)` reads the load report of llama.cpp ("mainline") and ik_llama.cpp from a log: llama-bench
run with `-v` (without it both engines' llama-bench print no load report), llama-server (mainline prints the
report only at `-lv 4` or above; ik always), ik's llama-sweep-bench. It returns one `EngineReport` per model
load, in order; `parse_report(text)` returns the last real one (see there). Unknown lines are ignored.

Sizes are printed in MiB with two decimals, so every byte count parsed here is exact only to +-0.005 MiB.

`expected_model_buffer_bytes(records, device_of, mmap=...)` predicts the model buffer bytes per device from
the GGUF's tensor records (`harness.models.inspect_model(path).tensors`): see docs/ENGINE_FLAGS.md, "Model
buffer sizes", for the engine code this follows and the measurements that check it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

MIB = 1024 * 1024
CPU_ALIGNMENT = 32      # ggml TENSOR_ALIGNMENT: the CPU buffer type's (and so a CPU-backed RPC server's) alignment
CUDA_ALIGNMENT = 128    # ggml-cuda.cu ggml_backend_cuda_buffer_type_get_alignment
CUDA_ROW_PADDING = 512  # MATRIX_ROW_PADDING: CUDA pads a quantized tensor by one partial row of this many elements

# mainline llama-server prefixes each line with "0.00.081.523 I "
_SERVER_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [A-Z] (?:\S{3,4}  ?)?")
_LOAD_START = re.compile(r"llama_model_loader: loaded meta data with")
_CTX_START = re.compile(r"llama_context: constructing llama_context|llama_init_from_model: n_ctx\s+=")
_MODEL_BUF = re.compile(r"^(?:llm_)?load_tensors:\s+(?P<name>\S+) (?:model )?buffer size =\s*(?P<mib>[\d.]+) MiB")
_KV_BUF = re.compile(r"(?P<name>\S+) KV buffer size =\s*(?P<mib>[\d.]+) MiB")
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
    compute_buffers: dict[str, int] = field(default_factory=dict)
    output_buffers: dict[str, int] = field(default_factory=dict)
    kv_layer_devices: dict[int, str] = field(default_factory=dict)  # mainline at debug level


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
    def compute_buffers(self) -> dict[str, int]:
        return _peak(c.compute_buffers for c in self.contexts)

    @property
    def output_buffers(self) -> dict[str, int]:
        return _peak(c.output_buffers for c in self.contexts)

    @property
    def kv_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.kv_buffers)

    @property
    def compute_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.compute_buffers)

    @property
    def output_bytes_by_device(self) -> dict[str, int]:
        return _by_device(self.output_buffers)

    def total_bytes_by_device(self) -> dict[str, int]:
        """Model + KV + compute + output buffers per device: what the engine allocated (or mapped)."""
        out: dict[str, int] = {}
        for part in (self.model_bytes_by_device, self.kv_bytes_by_device, self.compute_bytes_by_device,
                     self.output_bytes_by_device):
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


# ---------------------------------------------------------------------------------------------------------------
# predicted model buffers
# ---------------------------------------------------------------------------------------------------------------

def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _row_bytes(type_name: str, n_elements: int) -> int | None:
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    except KeyError:
        return None
    return n_elements // block * type_size if block > 1 else None


def alloc_bytes(record, *, alignment: int = CPU_ALIGNMENT, row_padding: int = 0) -> int:
    """What an allocated (not mapped) buffer spends on one tensor: ggml_backend_buft_alloc_buffer_n_plan pads
    each tensor's alloc size to the buffer type's alignment; CUDA adds one partial row of `row_padding` elements
    to quantized tensors whose rows are not a multiple of it."""
    size = record.n_bytes
    if row_padding and record.shape and record.shape[0] % row_padding:
        extra = _row_bytes(record.type_name, row_padding - record.shape[0] % row_padding)
        size += extra or 0
    return _pad(size, alignment)


def mapped_span(records) -> int:
    """Bytes of the file region from the first to the last byte of `records`: what a mapped CPU buffer reports
    (llama_model_loader::get_mapping_range). Tensors of other devices lying in between are counted too."""
    records = list(records)
    if not records:
        return 0
    if any(r.offset is None for r in records):
        raise ValueError("mapped_span needs tensor records read from a GGUF file (with data offsets)")
    return max(r.offset + r.n_bytes for r in records) - min(r.offset for r in records)


def engine_maps_weights(dialect: str, *, mmap: bool = True, tensors_overridden_to_cpu: bool = False,
                        merged_tensors: bool = False, run_time_repack: bool = False) -> bool:
    """Whether the engine's CPU model buffer will be a mapping of the file (its size a span) or an allocation.

    mainline: mapped unless loading without mmap (`-lm none`; llama-bench `-lm none`). ik: mapped unless
    `--no-mmap` / `-mmp 0`, `-rtr`, a merge (`-mqkv`, `-muge`) that creates new tensors, or any tensor that an
    override (`-ot ...=CPU`, `-cmoe`, `-ncmoe`, `--n-cpu-moe`) put on the CPU (create_tensors_helper::
    create_tensors: `use_mmap_buffer &= !has_buft_overrides`, unless GGML_CUDA_NO_PINNED is set)."""
    if dialect == "ik":
        return mmap and not (tensors_overridden_to_cpu or merged_tensors or run_time_repack)
    return mmap


# mainline ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type on an x86 AVX2 build (no AVX512 compiled in):
# the types moved to CPU_REPACK, and the divisor their row count must have
MAINLINE_AVX2_REPACK = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}


def mainline_repacked(records, cpu_names: Iterable[str], *, repack: bool = True,
                      types: Mapping[str, int] = MAINLINE_AVX2_REPACK) -> set[str]:
    """The CPU tensors mainline puts in CPU_REPACK (`--repack`, on by default): 2-D/3-D matrices of a repackable
    type used by MUL_MAT/MUL_MAT_ID, i.e. not token_embd (GET_ROWS) and not norms or biases."""
    if not repack:
        return set()
    cpu = set(cpu_names)
    out = set()
    for r in records:
        if r.name not in cpu or r.name.startswith("token_embd") or not r.name.endswith(".weight"):
            continue
        divisor = types.get(r.type_name)
        if divisor and len(r.shape) in (2, 3) and r.shape[1] % divisor == 0:
            out.add(r.name)
    return out


def expected_model_buffer_bytes(records, device_of: Mapping[str, str], *, mmap: bool, cpu_device: str = "cpu",
                                alignment: int | Mapping[str, int] = CPU_ALIGNMENT,
                                row_padding: Mapping[str, int] | None = None,
                                repacked: Iterable[str] = ()) -> dict[str, int]:
    """Model buffer bytes per device for tensors placed as `device_of` says (tensor name -> device; records not
    named there are not loaded). `mmap` is whether the engine maps the CPU weights (`engine_maps_weights`): then
    the CPU tensors cost the span of the file that holds them, else the sum of their sizes padded to the
    alignment. `repacked` CPU tensors (mainline CPU_REPACK) are always allocated. Accelerators allocate: each
    tensor padded to `alignment` (an int or per device; 32 for a CPU-backed RPC server, `CUDA_ALIGNMENT` for
    CUDA) plus `row_padding` (per device, `CUDA_ROW_PADDING` for CUDA)."""
    repacked = set(repacked)
    row_padding = row_padding or {}
    mapped, out = [], {}
    for r in records:
        device = device_of.get(r.name)
        if device is None:
            continue
        if device == cpu_device and mmap and r.name not in repacked:
            mapped.append(r)
            out.setdefault(device, 0)
            continue
        align = alignment if isinstance(alignment, int) else alignment.get(device, CPU_ALIGNMENT)
        out[device] = out.get(device, 0) + alloc_bytes(r, alignment=align, row_padding=row_padding.get(device, 0))
    if mapped:
        out[cpu_device] += mapped_span(mapped)
    return out
