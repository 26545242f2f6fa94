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

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from harness.errors import UserError, did_you_mean
from harness.models.inspect import ModelInfo
from harness.plan.placement import Placement
from harness.plan.split import check_split


class StrategyParams(BaseModel):
    """Parameters of a strategy; unknown names are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(StrategyParams):
    """Parameters of a strategy that can share its accelerator layers out over several devices: `split`, one
    weight per accelerator (`[3, 1]`, or "3,1"); none: everything on the first accelerator. The layers go
    out in contiguous blocks by mainline's `-ts` rule (`harness.plan.split`)."""

    split: tuple[float, ...] | None = None

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            value = [p.strip() for p in value.replace("/", ",").split(",") if p.strip()]
        if isinstance(value, (int, float)):
            value = [value]
        if value is not None:

            try:
                check_split([float(v) for v in value])
            except (UserError, TypeError, ValueError) as exc:
                raise ValueError(f"{list(value)} is not a split: {exc}") from None
        return value


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
        """The parameters a placement records; a split that was not given is left out (one device)."""
        out = params.model_dump()
        if out.get("split", 0) is None:
            del out["split"]
        elif "split" in out:
            out["split"] = [int(v) if float(v).is_integer() else v for v in out["split"]]
        return out

    @property
    def takes_split(self) -> bool:
        return "split" in self.Params.model_fields

    @abstractmethod
    def place(self, model: ModelInfo, params: StrategyParams) -> Placement:
        """The placement of every tensor of `model`. Raise UserError when the parameters do not fit the model
        (for example more expert layers than it has)."""

    def placement(self, model: ModelInfo, raw_params: dict[str, Any] | None = None) -> Placement:
        return self.place(model, self.parse_params(raw_params))
