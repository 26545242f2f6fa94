"""Placement: for every tensor of a model, the device that holds it. Engine-neutral.

Devices are `cpu` and `accel0`, `accel1`, ... (the first, second ... accelerator the engine is given; which
real device that is, `CUDA0` or `RPC0[127.0.0.1:50052]`, is decided when flags are compiled).

A placement also says where each repeating layer *runs* (`layer_devices`) and where the output layer runs
(`output_device`): that decides where the layer's KV cache and compute live, which tensor overrides cannot
change. Both engines assign the input layer (`token_embd`) to the CPU (mainline `load_tensors`: "there is
very little benefit to offloading the input layer, so always keep it on the CPU"); only an explicit `-ot`
moves it, and no built-in strategy does, so their placements have `token_embd` on `cpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from harness.models.inspect import ModelInfo, TensorRecord
from harness.models.tensor_groups import TensorGroup, classify_tensor, ffn_matrix, layer_index

CPU = "cpu"
ACCEL = "accel0"
INPUT_TENSORS = frozenset({"token_embd.weight"})


def accel(index: int) -> str:
    return f"accel{index}"


def is_accelerator(device: str) -> bool:
    return device.startswith("accel")


@dataclass(frozen=True)
class Placement:
    strategy: str
    params: dict
    tensor_devices: dict[str, str]        # every tensor name -> device
    layer_devices: tuple[str, ...]        # where repeating layer i runs (its KV cache and compute)
    output_device: str                    # where the output layer runs
    deferred: bool = False                # decided by the engine at load time (engine-fit): read it back
    note: str = ""

    def device_of(self, name: str) -> str:
        return self.tensor_devices[name]

    def tensors_on(self, device: str) -> list[str]:
        return [n for n, d in self.tensor_devices.items() if d == device]

    def devices(self) -> list[str]:
        return sorted(set(self.tensor_devices.values()) | set(self.layer_devices) | {self.output_device})

    def weight_bytes_by_device(self, model: ModelInfo) -> dict[str, int]:
        """Exact weight bytes per device, from the GGUF's tensor sizes."""
        sizes = {t.name: t.n_bytes for t in model.tensors}
        out: dict[str, int] = {}
        for name, device in self.tensor_devices.items():
            out[device] = out.get(device, 0) + sizes[name]
        return out

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.strategy}({params})" if params else self.strategy


def runs_on(layer_devices: tuple[str, ...], output_device: str, name: str) -> str:
    """The device a tensor lands on when nothing overrides it: the device its layer runs on."""
    if name in INPUT_TENSORS:
        return CPU
    layer = layer_index(name)
    if layer is not None and layer < len(layer_devices):
        return layer_devices[layer]
    return output_device


def build_placement(strategy: str, params: dict, model: ModelInfo, *, layer_devices: Iterable[str] | None = None,
                    output_device: str = ACCEL, moved_to_cpu: Iterable[str] = (),
                    moved_to: dict[str, str] | None = None, note: str = "", deferred: bool = False) -> Placement:
    """A placement where layers run on `layer_devices` (default: all on the accelerator), the tensors named
    in `moved_to_cpu` are held in system RAM and those in `moved_to` on the device given; everything else
    follows its layer."""
    layers = tuple(layer_devices) if layer_devices is not None else (ACCEL,) * model.n_layers
    if len(layers) != model.n_layers:
        raise ValueError(f"{len(layers)} layer devices for a model with {model.n_layers} layers")
    devices = {t.name: runs_on(layers, output_device, t.name) for t in loaded_tensors(model)}
    for name, device in [*((n, CPU) for n in moved_to_cpu), *(moved_to or {}).items()]:
        if name not in devices:
            raise ValueError(f"no tensor named {name!r} in the model")
        devices[name] = device
    return Placement(strategy, dict(params), devices, layers, output_device, deferred, note)


def select(model: ModelInfo, *, groups: Iterable[TensorGroup] | None = None, layers: Iterable[int] | None = None,
           matrices: Iterable[str] | None = None) -> list[str]:
    """Names of the model's tensors in `groups`, in `layers` (block index) and of FFN `matrices`
    (gate, up, down, gate_up); None means any."""
    group_set = set(groups) if groups is not None else None
    layer_set = set(layers) if layers is not None else None
    matrix_set = set(matrices) if matrices is not None else None
    chosen = []
    for tensor in loaded_tensors(model):
        if group_set is not None and classify_tensor(tensor.name) not in group_set:
            continue
        if layer_set is not None and layer_index(tensor.name) not in layer_set:
            continue
        if matrix_set is not None and ffn_matrix(tensor.name) not in matrix_set:
            continue
        chosen.append(tensor.name)
    return chosen


def loaded_tensors(model: ModelInfo) -> list[TensorRecord]:
    """The tensors an engine loads: all but those of NextN/MTP layers, which both engines skip unless
    multi-token prediction is switched on."""
    mtp = {layer.index for layer in model.layers if layer.is_mtp}
    return [t for t in model.tensors if layer_index(t.name) not in mtp]
