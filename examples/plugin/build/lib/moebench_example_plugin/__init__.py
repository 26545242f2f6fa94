"""interleaved-experts: the routed experts of every `every`-th expert layer (starting at `offset`) on the CPU,
spreading the CPU's share of the work evenly through the model instead of bunching it at one end."""

from pydantic import Field

from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from strategies.base import Strategy, StrategyParams


class InterleavedExperts(Strategy):
    name = "interleaved-experts"
    summary = "routed experts of every `every`-th expert layer on the CPU (an example plugin)"

    class Params(StrategyParams):
        every: int = Field(2, ge=1)
        offset: int = Field(0, ge=0)

    def place(self, model, params):
        layers = model.moe_layers[params.offset::params.every]
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=layers)
        return build_placement(self.name, self.params_dict(params), model, moved_to_cpu=experts)
