"""gpu-layers: a whole-layer split, as `-ngl` does it. The last k repeating layers and the output layer run on
the accelerator (weights, KV cache and compute), the first n_layers-k on the CPU. With a `split`, those layers
are shared out over several accelerators in contiguous blocks, as `-ts` does it.

The engines count differently: mainline's `-ngl` counts the output layer (`-ngl k+1` here), ik's does not
(`-ngl k`); the flag compiler takes care of that."""

from pydantic import Field

from harness.errors import UserError
from harness.plan.placement import build_placement
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy


class GpuLayers(Strategy):
    name = "gpu-layers"
    summary = "the last k whole layers (and the output layer) on the accelerator, the others on the CPU"

    class Params(SplitParams):
        k: int = Field(ge=0, description="repeating layers on the accelerator, counted from the last")

    def place(self, model, params):
        n = model.n_layers - model.nextn_predict_layers  # MTP layers are not loaded
        if params.k > n:
            raise UserError(f"strategy {self.name}: k={params.k} but the model has only {n} layers")
        first_gpu = n - params.k
        layers, output = offload(model.n_layers, first_gpu, params.split)
        note = (f"layers {first_gpu}..{n - 1} and the output layer on the accelerator" if params.k
                else "only the output layer on the accelerator")
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers,
                               output_device=output, note=note)
