"""The base class every strategy plugin derives from.

A plugin is a subclass with a `name`, a one-line `summary`, a pydantic `Params` model (its parameters, with
types, bounds and defaults) and a `place(model, params) -> Placement` method. Register it in your package's
pyproject.toml:

    [project.entry-points."moebench.strategies"]
    my-strategy = "my_package.module:MyStrategy"

Helpers for building placements live in `harness.plan.placement` (`build_placement`, `select`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UserError, did_you_mean
from harness.models.inspect import ModelInfo
from harness.plan.placement import Placement


class StrategyParams(BaseModel):
    """Parameters of a strategy; unknown names are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    needs_experts: ClassVar[bool] = False  # only meaningful on a model with routed experts

    def parse_params(self, raw: dict[str, Any] | None = None) -> StrategyParams:
        """Validate user-given parameters; a mistake becomes a one-line UserError naming the allowed ones."""
        raw = dict(raw or {})
        try:
            return self.Params.model_validate(raw)
        except ValidationError as exc:
            allowed = list(self.Params.model_fields)
            messages = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "(parameters)"
                if err["type"] == "extra_forbidden":
                    messages.append(f"unknown parameter {key!r}{did_you_mean(key, allowed)}; "
                                    f"allowed: {', '.join(allowed) or 'none'}")
                elif err["type"] == "missing":
                    messages.append(f"missing parameter {key!r}")
                else:
                    messages.append(f"{key}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})")
            raise UserError(f"strategy {self.name}: " + "; ".join(messages)) from None

    def params_dict(self, params: StrategyParams) -> dict[str, Any]:
        return params.model_dump()

    @abstractmethod
    def place(self, model: ModelInfo, params: StrategyParams) -> Placement:
        """The placement of every tensor of `model`. Raise UserError when the parameters do not fit the model
        (for example more expert layers than it has)."""

    def placement(self, model: ModelInfo, raw_params: dict[str, Any] | None = None) -> Placement:
        return self.place(model, self.parse_params(raw_params))
