"""Predict the memory a placement needs on each device: weights (exact, from the GGUF), the KV cache for the
configured context and cache types, and an estimate of the compute buffers; and whether it fits a VRAM budget.

The KV cache of layer i lives on the device layer i runs on (`Placement.layer_devices`); what one layer caches
per token (ordinary attention, multi-head latent attention, sliding windows) or per sequence (a recurrent
state) is `harness.models.attention`'s, per engine (ik's `-mla` mode, mainline's `--swa-full`).

Compute buffers are an estimate (the engines size them by reserving a worst-case graph): the logits of one
micro-batch where the output layer runs, the widest activations of a layer, and, without flash attention,
the attention scores of one micro-batch against the whole context. With op offload (`op_offload`, on by
default in both engines, where the accelerator offers it: CUDA yes, an RPC server no), a micro-batch of at
least 32 tokens runs the matrix products of weights held in RAM on the accelerator, which copies those weights
into its compute buffer: one layer's worth at a time, so the largest layer's RAM-held weights are added there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from harness.models.attention import kv_bytes_of_layer, recurrent_bytes_of_layer
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import layer_index
from harness.knobs import CACHE_TYPE_BYTES
from harness.plan.placement import CPU, INPUT_TENSORS, Placement, is_accelerator
from harness.units import MIB

# bytes per element of the KV cache types the engines accept (-ctk / -ctv)
@dataclass(frozen=True)
class MemorySettings:
    n_ctx: int = 4096
    n_ubatch: int = 512
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: bool = True
    op_offload: bool = False       # the accelerator copies RAM-held weights in for big micro-batches
    dialect: str = "mainline"      # whose cache rules: "mainline" or "ik"
    mla_mode: int | None = None    # ik's -mla (None: its default, 3)
    swa_full: bool = False         # mainline's --swa-full: full-context cache on sliding-window layers too
    n_seq: int = 1                 # sequences (llama-bench: 1)


OFFLOAD_MIN_BATCH = 32  # ggml-cuda: op_offload_min_batch_size, the batch from which ops are offloaded


@dataclass
class MemoryPrediction:
    weights_bytes: dict[str, int]
    kv_bytes: dict[str, int]
    compute_bytes: dict[str, int]          # estimate
    budgets: dict[str, int] = field(default_factory=dict)  # VRAM budget per accelerator (accel0, ...), if known
    notes: list[str] = field(default_factory=list)
    state_bytes: dict[str, int] = field(default_factory=dict)  # recurrent state (mainline's RS buffer)

    def device_bytes(self, device: str) -> int:
        return sum(part.get(device, 0)
                   for part in (self.weights_bytes, self.kv_bytes, self.compute_bytes, self.state_bytes))

    @property
    def devices(self) -> list[str]:
        return sorted(set(self.weights_bytes) | set(self.kv_bytes) | set(self.compute_bytes) | set(self.state_bytes))

    @property
    def vram_bytes(self) -> int:
        return sum(self.device_bytes(d) for d in self.devices if is_accelerator(d))

    @property
    def ram_bytes(self) -> int:
        return self.device_bytes(CPU)

    @property
    def vram_bytes_by_device(self) -> dict[str, int]:
        return {d: self.device_bytes(d) for d in self.devices if is_accelerator(d)}

    @property
    def budget_bytes(self) -> int | None:
        """The budgets of the accelerators this placement uses, together; None when unknown."""
        used = [self.budgets[d] for d in self.vram_bytes_by_device if d in self.budgets]
        return sum(used) if used else None

    def over_budget(self) -> dict[str, tuple[int, int]]:
        """Each accelerator predicted over its own budget: device -> (predicted bytes, budget bytes)."""
        return {d: (b, self.budgets[d]) for d, b in self.vram_bytes_by_device.items()
                if d in self.budgets and b > self.budgets[d]}

    @property
    def fits(self) -> bool | None:
        """True/False: every accelerator within its own budget; None when no budget is known."""
        if not self.budgets:
            return None
        return not self.over_budget()

    def oom_reason(self, names: Mapping[str, str] | None = None) -> str:
        """Why it does not fit, per device (`names`: accel0 -> CUDA0, ...)."""
        return "; ".join(f"predicted {b / MIB:.0f} MiB on {(names or {}).get(d, d)}, budget {cap / MIB:.0f} MiB"
                         for d, (b, cap) in self.over_budget().items())

    def to_dict(self) -> dict:
        by_device = self.vram_bytes_by_device
        return {
            "weights_mib": {d: round(b / MIB, 2) for d, b in self.weights_bytes.items()},
            "kv_mib": {d: round(b / MIB, 2) for d, b in self.kv_bytes.items()},
            **({"state_mib": {d: round(b / MIB, 2) for d, b in self.state_bytes.items()}} if self.state_bytes else {}),
            "compute_mib_estimate": {d: round(b / MIB, 2) for d, b in self.compute_bytes.items()},
            "vram_mib": round(self.vram_bytes / MIB, 1), "ram_mib": round(self.ram_bytes / MIB, 1),
            "budget_mib": None if self.budget_bytes is None else round(self.budget_bytes / MIB, 1),
            "vram_mib_by_device": {d: round(b / MIB, 1) for d, b in by_device.items()},
            "budget_mib_by_device": {d: round(b / MIB, 1) for d, b in self.budgets.items()},
            "fits_by_device": {d: b <= self.budgets[d] for d, b in by_device.items() if d in self.budgets},
            "fits": self.fits, "notes": self.notes,
        }


def cache_type_bytes(name: str) -> float:
    try:
        return CACHE_TYPE_BYTES[name.lower()]
    except KeyError:
        from harness.errors import UserError

        raise UserError(f"unknown KV cache type {name!r}; known: {', '.join(CACHE_TYPE_BYTES)}") from None


def kv_bytes_of(model: ModelInfo, settings: MemorySettings, layer: int) -> int:
    """Bytes of layer `layer`'s KV cache at the settings' context, cache types and engine."""
    return kv_bytes_of_layer(model.attention, layer, settings, cache_type_bytes)


def kv_bytes_per_layer(model: ModelInfo, settings: MemorySettings) -> int:
    """The largest layer's KV cache bytes (every layer's, on a model whose layers all cache alike)."""
    n_run = model.n_layers - model.nextn_predict_layers
    return max((kv_bytes_of(model, settings, i) for i in range(n_run)), default=0)


def _compute_estimate(model: ModelInfo, settings: MemorySettings, output_here: bool) -> int:
    """f32 activations of one micro-batch: a handful of n_embd-wide tensors, the logits where the output layer
    runs and, without flash attention, the attention scores against the whole context."""
    per_token = 6 * model.n_embd
    if output_here:
        per_token += model.vocab_size
    if not settings.flash_attn:
        per_token += model.n_head * settings.n_ctx
    return int(settings.n_ubatch * per_token * 4)


def _largest_ram_layer_bytes(placement: Placement, model: ModelInfo) -> int:
    """The weight bytes in RAM of the layer that holds the most there (the output layer counts as one)."""
    sizes = {t.name: t.n_bytes for t in model.tensors}
    per_layer: dict[int | None, int] = {}
    for name, device in placement.tensor_devices.items():
        if device == CPU and name not in INPUT_TENSORS:
            layer = layer_index(name)
            per_layer[layer] = per_layer.get(layer, 0) + sizes[name]
    return max(per_layer.values(), default=0)


def predict_memory(placement: Placement, model: ModelInfo, settings: MemorySettings = MemorySettings(),
                   budget_bytes: int | Mapping[str, int] | None = None) -> MemoryPrediction:
    """`budget_bytes`: one budget for every accelerator, or one per device (`accel0`, ...)."""
    weights = placement.weight_bytes_by_device(model)
    kv: dict[str, int] = {}
    state: dict[str, int] = {}
    n_run = model.n_layers - model.nextn_predict_layers
    for layer, device in enumerate(placement.layer_devices[:n_run]):
        kv[device] = kv.get(device, 0) + kv_bytes_of(model, settings, layer)
        if layer in model.attention.recurrent_layers:
            state[device] = state.get(device, 0) + recurrent_bytes_of_layer(model.attention, layer, settings)
    compute: dict[str, int] = {}
    for device in set(placement.layer_devices[:n_run]) | {placement.output_device, CPU}:
        compute[device] = _compute_estimate(model, settings, device == placement.output_device)
    accelerators = sorted(d for d in placement.devices() if is_accelerator(d))
    if settings.op_offload and settings.n_ubatch >= OFFLOAD_MIN_BATCH and accelerators:
        compute[accelerators[0]] = compute.get(accelerators[0], 0) + _largest_ram_layer_bytes(placement, model)
    notes = []
    if placement.deferred:
        notes.append("the engine decides this placement at load time; figures are for everything on the "
                     "accelerator and are replaced by the engine's own report after the run")
    if isinstance(budget_bytes, int):
        budgets = {d: budget_bytes for d in accelerators or ["accel0"]}
    else:
        budgets = dict(budget_bytes or {})
    return MemoryPrediction(weights, kv, compute, budgets, notes, state)
