"""cpu-moe: all routed experts in system RAM, everything else on the accelerator (`--cpu-moe`, `-ot exps=CPU`)."""

from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy


class CpuMoe(Strategy):
    name = "cpu-moe"
    needs_experts = True
    summary = "all routed experts on the CPU, attention, shared experts and the rest on the accelerator"

    Params = SplitParams

    def place(self, model, params: SplitParams):
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS])
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, moved_to_cpu=experts)
