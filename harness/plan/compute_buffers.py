"""The compute buffers a placement makes the engine reserve on each device.

Both engines size their compute buffers once, when the context is made, by allocating the worst-case graph:
one micro-batch of n_tokens = min(n_ctx, n_ubatch) tokens against the whole cache
(`harness.plan.reserve_graph`, built per layer kind: attention, latent attention, delta-net; MoE, shared or
dense FFN), also a one-token graph, keeping the larger buffer, sized with ggml's scheduler and allocator rules
(`harness.plan.graph_alloc`). A layer kind the reserve graph does not build gets a coarse per-token estimate.

With op offload (CUDA and other GPUs, not an RPC server), a micro-batch of at least 32 tokens runs the
products of RAM-held weights on the accelerator, which copies those weights into its compute buffer one
layer at a time: the largest layer's RAM-held weights are added there (source only: no GPU here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import layer_index
from harness.plan.graph_alloc import assign_devices, peak_bytes, with_copies
from harness.plan.graph_ops import F32
from harness.plan.placement import CPU, INPUT_TENSORS, Placement, is_accelerator
from harness.plan.reserve_graph import graph_known, reserve_graph

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings

OFFLOAD_MIN_BATCH = 32  # ggml-cuda: op_offload_min_batch_size, the batch from which ops are offloaded


_CACHE: dict[tuple, dict[str, int]] = {}   # the same placement and settings planned again (tune, plan, run)
_CACHE_SIZE = 4096


def compute_bytes_by_device(placement: Placement, model: ModelInfo, settings: "MemorySettings") -> dict[str, int]:
    """The compute buffer bytes each device reserves (devices with none are left out)."""
    key = (model.name, model.tensor_bytes_total, model.n_layers, tuple(sorted(placement.tensor_devices.items())),
           placement.layer_devices, placement.output_device, settings)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = _compute_bytes(placement, model, settings)
    return dict(_CACHE[key])


def _compute_bytes(placement: Placement, model: ModelInfo, settings: "MemorySettings") -> dict[str, int]:
    n_tokens = max(1, min(settings.n_ctx, settings.n_ubatch))
    if not graph_known(model):
        out = _coarse_estimate(placement, model, settings, n_tokens)
    else:
        out = {}
        for tokens in (n_tokens, 1):  # the prompt graph, then the one-token graph: the larger buffer stays
            graph = reserve_graph(placement, model, settings, tokens).ordered()
            devices = assign_devices(graph, CPU)
            copied, copied_devices = with_copies(graph, devices)
            for device, n_bytes in peak_bytes(copied, copied_devices).items():
                out[device] = max(out.get(device, 0), n_bytes)
    accelerators = sorted(d for d in placement.devices() if is_accelerator(d))
    if settings.op_offload and n_tokens >= OFFLOAD_MIN_BATCH and accelerators:
        out[accelerators[0]] = out.get(accelerators[0], 0) + _largest_ram_layer_bytes(placement, model)
    return {d: b for d, b in out.items() if b > 1}  # the engines print only buffers over 1 byte


def _coarse_estimate(placement: Placement, model: ModelInfo, settings: "MemorySettings", n_tokens: int
                     ) -> dict[str, int]:
    """f32 activations of one micro-batch on every device a layer runs on (a handful of n_embd-wide tensors), the
    logits where the output layer runs, the attention mask and, without flash attention, the scores of one
    micro-batch against the whole context."""
    out: dict[str, int] = {}
    n_run = model.n_layers - model.nextn_predict_layers
    for device in set(placement.layer_devices[:n_run]) | {placement.output_device, CPU}:
        per_token = 6 * model.n_embd + settings.n_ctx
        if device == placement.output_device:
            per_token += model.vocab_size
        if not settings.flash_attn:
            per_token += max(model.n_head, 1) * settings.n_ctx
        out[device] = n_tokens * per_token * F32
    return out


def _largest_ram_layer_bytes(placement: Placement, model: ModelInfo) -> int:
    """The weight bytes in RAM of the layer that holds the most there (the output layer counts as one)."""
    sizes = {t.name: t.n_bytes for t in model.tensors}
    per_layer: dict[int | None, int] = {}
    for name, device in placement.tensor_devices.items():
        if device == CPU and name not in INPUT_TENSORS:
            layer = layer_index(name)
            per_layer[layer] = per_layer.get(layer, 0) + sizes[name]
    return max(per_layer.values(), default=0)
