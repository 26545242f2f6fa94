"""all-gpu: the baseline, every layer and tensor on the accelerator (the input embeddings stay on the CPU in
both engines)."""

from harness.plan.placement import build_placement
from strategies.base import Strategy, StrategyParams


class AllGpu(Strategy):
    name = "all-gpu"
    summary = "everything on the accelerator (the baseline; needs the whole model to fit)"

    def place(self, model, params: StrategyParams):
        return build_placement(self.name, {}, model)
