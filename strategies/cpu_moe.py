"""cpu-moe: all routed experts in system RAM, everything else on the accelerator (`--cpu-moe`, `-ot exps=CPU`)."""

from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from strategies.base import Strategy, StrategyParams


class CpuMoe(Strategy):
    name = "cpu-moe"
    needs_experts = True
    summary = "all routed experts on the CPU, attention, shared experts and the rest on the accelerator"

    def place(self, model, params: StrategyParams):
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS])
        return build_placement(self.name, {}, model, moved_to_cpu=experts)
