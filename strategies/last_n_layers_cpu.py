"""last-n-layers-cpu: every tensor of the last n repeating layers held in system RAM (`-ot "blk\\.(..)\\.=CPU"`),
while all layers still run on the accelerator's side (their KV cache stays there)."""

from pydantic import Field

from harness.errors import UserError
from harness.plan.placement import build_placement, select
from strategies.base import Strategy, StrategyParams


class LastNLayersCpu(Strategy):
    name = "last-n-layers-cpu"
    summary = "all weights of the last n layers on the CPU (KV cache stays on the accelerator)"

    class Params(StrategyParams):
        n: int = Field(ge=0)

    def place(self, model, params):
        n_layers = model.n_layers - model.nextn_predict_layers
        if params.n > n_layers:
            raise UserError(f"strategy {self.name}: n={params.n} but the model has only {n_layers} layers")
        layers = range(n_layers - params.n, n_layers)
        return build_placement(self.name, self.params_dict(params), model, moved_to_cpu=select(model, layers=layers))
