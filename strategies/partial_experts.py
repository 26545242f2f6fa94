"""partial-experts: only some expert matrices (e.g. `down`, or `gate,up`) of n expert layers on the CPU."""

from typing import Literal

from pydantic import Field, field_validator

from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import build_placement, select
from harness.plan.split import offload
from strategies.base import SplitParams, Strategy
from strategies.first_n_experts import expert_layers

Matrix = Literal["gate", "up", "down", "gate_up"]


class PartialExperts(Strategy):
    name = "partial-experts"
    needs_experts = True
    summary = "only the chosen expert matrices (parts=down, or gate,up) of n expert layers on the CPU"

    class Params(SplitParams):
        n: int = Field(ge=0)
        parts: tuple[Matrix, ...] = ("down",)
        side: Literal["first", "last"] = "first"

        @field_validator("parts", mode="before")
        @classmethod
        def _split(cls, value):
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            return value

    def place(self, model, params):
        layers = expert_layers(model, params.n, from_end=params.side == "last", strategy=self.name)
        tensors = select(model, groups=[TensorGroup.ROUTED_EXPERTS], layers=layers, matrices=params.parts)
        layers, output = offload(model.n_layers, 0, params.split)
        return build_placement(self.name, {**self.params_dict(params), "parts": ",".join(params.parts)}, model,
                               layer_devices=layers,
                               output_device=output, moved_to_cpu=tensors)
