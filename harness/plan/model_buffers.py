"""The model buffers an engine will report for a placement, predicted from the GGUF's tensor records
(`harness.models.inspect_model(path).tensors`, with their files and data offsets): a mapped CPU buffer is the
span of a file holding CPU tensors (one buffer per file: a split model's shards are mapped one by one),
allocations are padded per tensor. See docs/ENGINE_FLAGS.md, "Model buffer
sizes", for the engine code this follows and the measurements that check it; `harness.plan.load_report` parses
what the engine did report.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from harness.units import MIB

CPU_ALIGNMENT = 32      # ggml TENSOR_ALIGNMENT: the CPU buffer type's (and so a CPU-backed RPC server's) alignment
CUDA_ALIGNMENT = 128    # ggml-cuda.cu ggml_backend_cuda_buffer_type_get_alignment
CUDA_ROW_PADDING = 512  # MATRIX_ROW_PADDING: CUDA pads a quantized tensor by one partial row of this many elements


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


def mapped_spans(records) -> dict[str | None, int]:
    """Per file (`record.file`, the shard of a split model), the bytes from the first to the last byte of its
    `records`: each is one mapped CPU buffer (both engines map every file separately and make one buffer per
    file that holds CPU tensors: llama_model_loader::get_mapping_range(idx), called per file). Tensors of other
    devices lying in between are counted too."""
    records = list(records)
    if any(r.offset is None for r in records):
        raise ValueError("mapped_spans needs tensor records read from a GGUF file (with data offsets)")
    first: dict[str | None, int] = {}
    last: dict[str | None, int] = {}
    for r in records:
        first[r.file] = min(first.get(r.file, r.offset), r.offset)
        last[r.file] = max(last.get(r.file, 0), r.offset + r.n_bytes)
    return {f: last[f] - first[f] for f in first}


def mapped_span(records) -> int:
    """What the mapped CPU buffers of `records` report together: the sum of their files' spans."""
    return sum(mapped_spans(records).values())


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
    the CPU tensors cost the span of each file that holds them, else the sum of their sizes padded to the
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
