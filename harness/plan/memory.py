"""Predict the memory a placement needs on each device, in the three parts the engines report: weights (exact,
from the GGUF), the KV cache for the configured context and cache types, and the compute buffers
(`harness.plan.compute_buffers`); and whether it fits a VRAM budget.

The KV cache of layer i lives on the device layer i runs on (`Placement.layer_devices`); what one layer caches
per token (ordinary attention, multi-head latent attention, sliding windows) or per sequence (a recurrent
state) is `harness.models.attention`'s, per engine (ik's `-mla` mode, mainline's `--swa-full`); ik on an RPC device
keeps it on the CPU (`MemorySettings.kv_on_cpu`). The context is the one the engine allocates: `padded_context`
(mainline pads to 256 tokens; ik to 256 with flash attention, 32 without).

Compute buffers are the engines' own reservation replayed (`harness.plan.compute_buffers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from harness.errors import UserError
from harness.models.attention import kv_bytes_of_layer, recurrent_bytes_of_layer
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
    dialect: str = "mainline"      # whose graph, padding and cache rules: "mainline" or "ik"
    kv_on_cpu: bool = False        # ik on an RPC device: every layer's KV cache stays on the CPU
    mla_mode: int | None = None    # ik's -mla (None: its default, 3)
    attn_max_batch_mib: int = 0    # ik's -amb: an attention K*Q over this many MiB computed in steps (0: never)
    swa_full: bool = False         # mainline's --swa-full: full-context cache on sliding-window layers too
    n_seq: int = 1                 # sequences (llama-bench: 1)
    n_outputs_max: int | None = None  # mainline: the outputs a micro-batch may have (None: every token, as
                                      # llama-bench's n_batch bound and ik's worst case); llama-server: its slots


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

    def weights_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        return _renamed(self.weights_bytes, names)

    def kv_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        """The KV cache and recurrent state per device under the engine's names (`cpu` -> `CPU`, `accel0` ->
        `RPC0[host:port]`): what the engine's `KV buffer size` (+ `RS buffer size`) lines should say."""
        both = dict(self.kv_bytes)
        for device, n_bytes in self.state_bytes.items():
            both[device] = both.get(device, 0) + n_bytes
        return _renamed(both, names)

    def compute_by_engine_device(self, names: Mapping[str, str]) -> dict[str, int]:
        """The compute buffers per device under the engine's names (its `compute buffer size` lines)."""
        return _renamed(self.compute_bytes, names)

    def to_dict(self) -> dict:
        by_device = self.vram_bytes_by_device
        return {
            "weights_mib": {d: round(b / MIB, 2) for d, b in self.weights_bytes.items()},
            "kv_mib": {d: round(b / MIB, 2) for d, b in self.kv_bytes.items()},
            **({"state_mib": {d: round(b / MIB, 2) for d, b in self.state_bytes.items()}} if self.state_bytes else {}),
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


def kv_bytes_of(model: ModelInfo, settings: MemorySettings, layer: int) -> int:
    """Bytes of layer `layer`'s KV cache at the settings' context, cache types and engine."""
    return kv_bytes_of_layer(model.attention, layer, settings, cache_type_bytes)


def kv_bytes_per_layer(model: ModelInfo, settings: MemorySettings) -> int:
    """The largest layer's KV cache bytes (every layer's, on a model whose layers all cache alike)."""
    n_run = model.n_layers - model.nextn_predict_layers
    return max((kv_bytes_of(model, settings, i) for i in range(n_run)), default=0)


def kv_bytes_by_device(placement: Placement, model: ModelInfo, settings: MemorySettings) -> dict[str, int]:
    """The KV cache of every layer that runs (each layer's own: sliding-window and latent caches differ), on the
    device that holds it."""
    kv: dict[str, int] = {}
    n_run = model.n_layers - model.nextn_predict_layers
    for layer, device in enumerate(placement.layer_devices[:n_run]):
        device = CPU if settings.kv_on_cpu else device
        kv[device] = kv.get(device, 0) + kv_bytes_of(model, settings, layer)
    return kv


def state_bytes_by_device(placement: Placement, model: ModelInfo, settings: MemorySettings) -> dict[str, int]:
    """The recurrent state of every recurrent layer that runs, on the device that holds it."""
    state: dict[str, int] = {}
    n_run = model.n_layers - model.nextn_predict_layers
    for layer, device in enumerate(placement.layer_devices[:n_run]):
        if layer in model.attention.recurrent_layers:
            device = CPU if settings.kv_on_cpu else device
            state[device] = state.get(device, 0) + recurrent_bytes_of_layer(model.attention, layer, settings)
    return state


def predict_memory(placement: Placement, model: ModelInfo, settings: MemorySettings = MemorySettings(),
                   budget_bytes: int | Mapping[str, int] | None = None) -> MemoryPrediction:
    """`budget_bytes`: one budget for every accelerator, or one per device (`accel0`, ...)."""
    weights = placement.weight_bytes_by_device(model)
    kv = kv_bytes_by_device(placement, model, settings)
    state = state_bytes_by_device(placement, model, settings)
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
    return MemoryPrediction(weights, kv, compute, budgets, notes, state)
