"""experts-balanced: the routed experts of n expert layers stay on the CPU (the first n, the last n, or head and
tail), and the layers share the accelerators out so that each holds about its share of the bytes (`split`, by
default the devices' VRAM budgets, `harness.plan.devices`).

Why not `-ncmoe N -ts 3,1`: `-ts` splits layers by count, and `-ncmoe` takes the experts of the first N layers,
which `-ts` gave to the first device; the first device ends up light and every device-resident expert sits on
the last one. Here the layer blocks are chosen by bytes after the experts are taken out, in order (accel0 the
first layers), so the result is still one `-ts` (layers per device) plus the experts' overrides."""

from typing import Literal

from pydantic import Field

from harness.errors import UserError
from harness.models.tensor_groups import TensorGroup, layer_index
from harness.plan.placement import INPUT_TENSORS, build_placement, loaded_tensors, select
from harness.plan.split import balanced_layers
from strategies.base import SplitParams, Strategy
from strategies.first_n_experts import expert_layers


class ExpertsBalanced(Strategy):
    name = "experts-balanced"
    needs_experts = True
    summary = ("routed experts of n expert layers on the CPU (first, last or head-tail), the layers spread over "
               "the accelerators by bytes in proportion to `split` (default: their VRAM budgets)")

    class Params(SplitParams):
        n: int = Field(0, ge=0, description="expert layers whose routed experts stay on the CPU")
        cpu: Literal["first", "last", "head-tail"] = Field("first", description="which expert layers those are")

    def place(self, model, params):
        n_moe = len(model.moe_layers)
        if params.n > n_moe:
            raise UserError(f"strategy {self.name}: n={params.n} but the model has only {n_moe} layers with experts")
        if params.cpu == "head-tail":
            head = (params.n + 1) // 2
            cpu_layers = (expert_layers(model, head, from_end=False, strategy=self.name)
                          + expert_layers(model, params.n - head, from_end=True, strategy=self.name))
        else:
            cpu_layers = expert_layers(model, params.n, from_end=params.cpu == "last", strategy=self.name)
        experts = set(select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=cpu_layers))
        # the bytes each layer (the output layer last) leaves on an accelerator
        item_bytes = [0] * (model.n_layers + 1)
        for tensor in loaded_tensors(model):
            if tensor.name in experts or tensor.name in INPUT_TENSORS:
                continue
            layer = layer_index(tensor.name)
            item_bytes[model.n_layers if layer is None else layer] += tensor.n_bytes
        devices = balanced_layers(item_bytes, params.split or [1.0])
        return build_placement(self.name, self.params_dict(params), model, layer_devices=devices[:-1],
                               output_device=devices[-1], moved_to_cpu=sorted(experts))
