"""head-tail-experts: the routed experts of the first `head` and the last `tail` expert layers on the CPU."""

from pydantic import Field

from harness.errors import UserError
from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy
from strategies.first_n_experts import expert_layers


class HeadTailExperts(Strategy):
    name = "head-tail-experts"
    needs_experts = True
    summary = "routed experts of the first `head` and last `tail` expert layers on the CPU"

    class Params(SplitParams):
        head: int = Field(ge=0)
        tail: int = Field(ge=0)

    def place(self, model, params):
        if params.head + params.tail > len(model.moe_layers):
            raise UserError(f"strategy {self.name}: head+tail={params.head + params.tail} but the model has only "
                            f"{len(model.moe_layers)} layers with experts")
        layers = (expert_layers(model, params.head, from_end=False, strategy=self.name)
                  + expert_layers(model, params.tail, from_end=True, strategy=self.name))
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=layers)
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, moved_to_cpu=experts)
