"""last-n-experts: the routed experts of the last n layers that have experts stay on the CPU."""

from pydantic import Field

from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy
from strategies.first_n_experts import expert_layers


class LastNExperts(Strategy):
    name = "last-n-experts"
    needs_experts = True
    summary = "routed experts of the last n expert layers on the CPU"

    class Params(SplitParams):
        n: int = Field(ge=0, description="how many expert layers, counted from the last")

    def place(self, model, params):
        layers = expert_layers(model, params.n, from_end=True, strategy=self.name)
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=layers)
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, moved_to_cpu=experts)
