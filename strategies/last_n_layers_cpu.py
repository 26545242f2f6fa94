"""last-n-layers-cpu: every tensor of the last n repeating layers held in system RAM (`-ot "blk\\.(..)\\.=CPU"`),
while all layers still run on the accelerator's side (their KV cache stays there)."""

from pydantic import Field

from harness.errors import UserError
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy


class LastNLayersCpu(Strategy):
    name = "last-n-layers-cpu"
    summary = "all weights of the last n layers on the CPU (KV cache stays on the accelerator)"

    class Params(SplitParams):
        n: int = Field(ge=0)

    def place(self, model, params):
        n_layers = model.n_layers - model.nextn_predict_layers
        if params.n > n_layers:
            raise UserError(f"strategy {self.name}: n={params.n} but the model has only {n_layers} layers")
        in_ram = select(model, layers=range(n_layers - params.n, n_layers))
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, moved_to_cpu=in_ram)
