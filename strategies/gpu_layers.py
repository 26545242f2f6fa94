"""gpu-layers: a whole-layer split, as `-ngl` does it. The last k repeating layers and the output layer run on
the accelerator (weights, KV cache and compute), the first n_layers-k on the CPU.

The engines count differently: mainline's `-ngl` counts the output layer (`-ngl k+1` here), ik's does not
(`-ngl k`); the flag compiler takes care of that."""

from pydantic import Field

from harness.errors import UserError
from harness.plan.placement import ACCEL, CPU, build_placement
from strategies.base import Strategy, StrategyParams


class GpuLayers(Strategy):
    name = "gpu-layers"
    summary = "the last k whole layers (and the output layer) on the accelerator, the others on the CPU"

    class Params(StrategyParams):
        k: int = Field(ge=0, description="repeating layers on the accelerator, counted from the last")

    def place(self, model, params):
        n = model.n_layers - model.nextn_predict_layers  # MTP layers are not loaded
        if params.k > n:
            raise UserError(f"strategy {self.name}: k={params.k} but the model has only {n} layers")
        layers = tuple(CPU if i < n - params.k else ACCEL for i in range(model.n_layers))
        first_gpu = n - params.k
        note = (f"layers {first_gpu}..{n - 1} and the output layer on the accelerator" if params.k
                else "only the output layer on the accelerator")
        return build_placement(self.name, self.params_dict(params), model, layer_devices=layers, note=note)
