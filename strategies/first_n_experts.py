"""first-n-experts: the routed experts of the first n layers that have experts stay on the CPU
(what mainline's `--n-cpu-moe n` does when every layer has experts)."""

from pydantic import Field

from harness.errors import UserError
from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy


def expert_layers(model, n: int, *, from_end: bool, strategy: str) -> list[int]:
    """The first (or last) `n` of the model's layers that have routed experts."""
    moe = model.moe_layers
    if n > len(moe):
        raise UserError(f"strategy {strategy}: n={n} but the model has only {len(moe)} layers with experts")
    if n == 0:
        return []
    return moe[-n:] if from_end else moe[:n]


class FirstNExperts(Strategy):
    name = "first-n-experts"
    needs_experts = True
    summary = "routed experts of the first n expert layers on the CPU (mainline --n-cpu-moe)"

    class Params(SplitParams):
        n: int = Field(ge=0, description="how many expert layers, counted from the first")

    def place(self, model, params):
        layers = expert_layers(model, params.n, from_end=False, strategy=self.name)
        experts = select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=layers)
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, moved_to_cpu=experts)
