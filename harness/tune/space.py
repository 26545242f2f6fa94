"""The search space of `moebench tune`: the built-in placement families over every parameter value the model
allows, crossed with the engine knob values asked for, planned by the one planner; the points the memory
planner predicts not to fit the VRAM budget are left out."""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.inspect import ModelInfo
from harness.plan.planner import Configuration

DEFAULT_SPACE = ("first-n-experts", "last-n-experts", "head-tail-experts", "partial-experts", "gpu-layers")


def family_grid(name: str, model: ModelInfo) -> list[dict]:
    """bench.yaml strategy entries covering every parameter value of one family on `model`."""
    n_moe = len(model.moe_layers)
    n_layers = model.n_layers - model.nextn_predict_layers
    if name in ("first-n-experts", "last-n-experts"):
        return [{"name": name, "params": {"n": list(range(1, n_moe + 1))}}] if n_moe else []
    if name == "head-tail-experts":
        return [{"name": name, "params": {"head": head, "tail": list(range(1, n_moe - head + 1))}}
                for head in range(1, n_moe)]
    if name == "partial-experts":
        return [{"name": name, "params": {"n": list(range(1, n_moe + 1)), "parts": ["down", "gate,up"]}}] \
            if n_moe else []
    if name == "gpu-layers":
        return [{"name": name, "params": {"k": list(range(0, n_layers + 1))}}]
    return [{"name": name}]  # any other strategy: its default parameters


def space_strategies(model: ModelInfo, families: tuple[str, ...] | list[str]) -> list[dict]:
    return [{"name": "all-gpu"}] + [entry for name in families for entry in family_grid(name, model)]


@dataclass
class Candidate:
    config_id: str
    conf: Configuration
    spec: dict                                  # the bench.yaml strategy entry that plans exactly this point
    predicted: dict[str, float | None]          # "pp" / "tg" tokens/s
    workloads: dict = None                      # "pp" / "tg" -> harness.perf.workload.Workload

    @property
    def label(self) -> str:
        knobs = self.conf.knobs.describe()
        return self.conf.placement.describe() + (f" [{knobs}]" if knobs else "")


def spec_of(conf: Configuration) -> dict:
    return {"name": conf.strategy, "params": {k: (",".join(v) if isinstance(v, (list, tuple)) and k == "parts" else v)
                                              for k, v in conf.params.items()}}
