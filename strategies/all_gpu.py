"""all-gpu: the baseline, every layer and tensor on the accelerator (the input embeddings stay on the CPU in
both engines)."""

from harness.plan.placement import build_placement
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy


class AllGpu(Strategy):
    name = "all-gpu"
    summary = "everything on the accelerator(s) (the baseline; needs the whole model to fit)"
    Params = SplitParams

    def place(self, model, params: SplitParams):
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output)
