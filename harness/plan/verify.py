"""Checked against reality: the model buffers a placement should make the engine report on a target (what it
did report is parsed by `harness/plan/load_report.py`); the byte rules are `harness/plan/model_buffers.py`."""

from __future__ import annotations

from harness.models.inspect import ModelInfo
from harness.plan.flags import CompiledFlags, Target
from harness.plan.model_buffers import (
    CPU_ALIGNMENT, CUDA_ALIGNMENT, CUDA_ROW_PADDING, engine_maps_weights, expected_model_buffer_bytes,
    mainline_repacked,
)
from harness.plan.placement import CPU, Placement, accel, loaded_tensors


IK_CPU_BUFFER_EXTRA = 32  # IK: ggml-backend.cpp ggml_backend_cpu_buffer_type_alloc_buffer, size += TENSOR_ALIGNMENT


def engine_device_names(target: Target) -> dict[str, str]:
    """Placement device -> the name the engine reports its buffers under (`CPU`, `CUDA1`, `RPC0[host:port]`)."""
    return {CPU: "CPU", **{accel(i): buffer_type for i, buffer_type in enumerate(target.buffer_types)}}


def predicted_model_buffers(placement: Placement, model: ModelInfo, target: Target, compiled: CompiledFlags,
                            *, mmap: bool = True, repack: bool = True) -> dict[str, int]:
    """Model buffer bytes per device as the engine will report them: a mapped CPU buffer is the span of the file
    holding the CPU tensors, allocations are padded per tensor (docs/ENGINE_FLAGS.md, "Model buffer sizes")."""
    names = engine_device_names(target)
    device_of = {t.name: names.get(placement.tensor_devices[t.name], placement.tensor_devices[t.name])
                 for t in loaded_tensors(model)}
    cpu_names = [n for n, d in device_of.items() if d == "CPU"]
    overridden_to_cpu = "CPU" in compiled.patterns or bool(compiled.native)
    maps = engine_maps_weights(target.dialect, mmap=mmap, tensors_overridden_to_cpu=overridden_to_cpu)
    repacked = mainline_repacked(model.tensors, cpu_names, repack=repack) if target.dialect == "mainline" else ()
    cuda = [b for b in target.buffer_types if b.startswith("CUDA")]
    out = expected_model_buffer_bytes(
        model.tensors, device_of, mmap=maps, cpu_device="CPU",
        alignment={**{b: CPU_ALIGNMENT for b in target.buffer_types}, **{b: CUDA_ALIGNMENT for b in cuda},
                   "CPU": CPU_ALIGNMENT},
        row_padding={b: CUDA_ROW_PADDING for b in cuda}, repacked=repacked)
    if target.dialect == "ik":  # ik's CPU buffers (its RPC server's too) allocate 32 bytes more than asked
        for device, size in out.items():
            if size and (device == "CPU" and not maps or device.startswith("RPC")):
                out[device] = size + IK_CPU_BUFFER_EXTRA
    return out

