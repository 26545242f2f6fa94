"""Predict the memory a placement needs on each device, in the three parts the engines report: weights (exact,
from the GGUF), the KV cache for the configured context and cache types, and the compute buffers
(`harness.plan.compute_buffers`); and whether it fits a VRAM budget.

The KV cache of layer i lives on the device layer i runs on (`Placement.layer_devices`; ik on an RPC device
keeps it on the CPU: `MemorySettings.kv_on_cpu`), sized n_ctx x n_head_kv x (head_dim_k x size(type_k) +
head_dim_v x size(type_v)) per layer (`kv_bytes_per_layer`, the one per-layer formula). Models with multi-head
latent attention (DeepSeek) cache less than this; their KV prediction is an upper bound. The context is the
one the engine allocates: `padded_context` (mainline pads to 256 tokens; ik to 256 with flash attention, 32
without).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from harness.errors import UserError
from harness.models.inspect import ModelInfo
from harness.knobs import CACHE_TYPE_BYTES
from harness.plan.compute_buffers import compute_bytes_by_device
from harness.plan.placement import CPU, Placement, is_accelerator
from harness.units import MIB

@dataclass(frozen=True)
class MemorySettings:
    n_ctx: int = 4096
    n_ubatch: int = 512
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: bool = True
    op_offload: bool = False       # the accelerator copies RAM-held weights in for big micro-batches
    dialect: str = "mainline"      # whose graph and padding: "mainline" or "ik"
    kv_on_cpu: bool = False        # ik on an RPC device: every layer's KV cache stays on the CPU


def padded_context(n_ctx: int, dialect: str = "mainline", flash_attn: bool = True) -> int:
    """The context the engine allocates for `n_ctx` tokens: mainline `llama_context` pads to 256
    (`GGML_PAD(n_ctx, 256)`); ik to `llama_kv_cache::get_padding(flash_attn)`: 256 with flash attention, else 32."""
    pad = 256 if dialect != "ik" or flash_attn else 32
    return (n_ctx + pad - 1) // pad * pad


@dataclass
class MemoryPrediction:
    weights_bytes: dict[str, int]
    kv_bytes: dict[str, int]
    compute_bytes: dict[str, int]          # estimate
    budgets: dict[str, int] = field(default_factory=dict)  # VRAM budget per accelerator (accel0, ...), if known
    notes: list[str] = field(default_factory=list)

    def device_bytes(self, device: str) -> int:
        return sum(part.get(device, 0) for part in (self.weights_bytes, self.kv_bytes, self.compute_bytes))

    @property
    def devices(self) -> list[str]:
        return sorted(set(self.weights_bytes) | set(self.kv_bytes) | set(self.compute_bytes))

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

    def weights_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        return _renamed(self.weights_bytes, names)

    def kv_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        """The KV cache (or recurrent state) per device under the engine's names (`cpu` -> `CPU`, `accel0` ->
        `RPC0[host:port]`): what the engine's `KV buffer size` (+ `RS buffer size`) lines should say."""
        return _renamed(self.kv_bytes, names)

    def compute_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        """The compute buffers per device under the engine's names (its `compute buffer size` lines)."""
        return _renamed(self.compute_bytes, names)

    def to_dict(self) -> dict:
        by_device = self.vram_bytes_by_device
        return {
            "weights_mib": {d: round(b / MIB, 2) for d, b in self.weights_bytes.items()},
            "kv_mib": {d: round(b / MIB, 2) for d, b in self.kv_bytes.items()},
            "compute_mib": {d: round(b / MIB, 2) for d, b in self.compute_bytes.items()},
            "vram_mib": round(self.vram_bytes / MIB, 1), "ram_mib": round(self.ram_bytes / MIB, 1),
            "budget_mib": None if self.budget_bytes is None else round(self.budget_bytes / MIB, 1),
            "vram_mib_by_device": {d: round(b / MIB, 1) for d, b in by_device.items()},
            "budget_mib_by_device": {d: round(b / MIB, 1) for d, b in self.budgets.items()},
            "fits_by_device": {d: b <= self.budgets[d] for d, b in by_device.items() if d in self.budgets},
            "fits": self.fits, "notes": self.notes,
        }


def _renamed(part: Mapping[str, int], names: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for device, n_bytes in part.items():
        name = names.get(device, device)
        out[name] = out.get(name, 0) + n_bytes
    return out


def cache_type_bytes(name: str) -> float:
    try:
        return CACHE_TYPE_BYTES[name.lower()]
    except KeyError:
        raise UserError(f"unknown KV cache type {name!r}; known: {', '.join(CACHE_TYPE_BYTES)}") from None


def kv_bytes_per_layer(model: ModelInfo, settings: MemorySettings) -> int:
    per_token = model.n_head_kv * (model.head_dim_k * cache_type_bytes(settings.cache_type_k)
                                   + model.head_dim_v * cache_type_bytes(settings.cache_type_v))
    return int(settings.n_ctx * per_token)


def kv_bytes_by_device(placement: Placement, model: ModelInfo, settings: MemorySettings) -> dict[str, int]:
    """The KV cache (or recurrent state) of every layer that runs, on the device that holds it."""
    kv: dict[str, int] = {}
    per_layer = kv_bytes_per_layer(model, settings)
    n_run = model.n_layers - model.nextn_predict_layers
    for device in placement.layer_devices[:n_run]:
        device = CPU if settings.kv_on_cpu else device
        kv[device] = kv.get(device, 0) + per_layer
    return kv


def predict_memory(placement: Placement, model: ModelInfo, settings: MemorySettings = MemorySettings(),
                   budget_bytes: int | Mapping[str, int] | None = None) -> MemoryPrediction:
    """`budget_bytes`: one budget for every accelerator, or one per device (`accel0`, ...)."""
    weights = placement.weight_bytes_by_device(model)
    kv = kv_bytes_by_device(placement, model, settings)
    compute = compute_bytes_by_device(placement, model, settings)
    accelerators = sorted(d for d in placement.devices() if is_accelerator(d))
    notes = []
    if placement.deferred:
        notes.append("the engine decides this placement at load time; figures are for everything on the "
                     "accelerator and are replaced by the engine's own report after the run")
    if isinstance(budget_bytes, int):
        budgets = {d: budget_bytes for d in accelerators or ["accel0"]}
    else:
        budgets = dict(budget_bytes or {})
    return MemoryPrediction(weights, kv, compute, budgets, notes)
