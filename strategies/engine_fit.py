"""engine-fit: the engine's own automatic fitting (mainline `--fit` / `-fitt`, ik `--fit`) as a baseline.
The placement is decided by the engine at load time and read back from its load report after the run."""

from pydantic import Field

from harness.plan.placement import build_placement
from strategies.base import Strategy, StrategyParams


class EngineFit(Strategy):
    name = "engine-fit"
    summary = "the engine fits the model itself (--fit); its placement is read back from the load report"

    class Params(StrategyParams):
        margin_mib: int = Field(1024, ge=0, description="memory the engine leaves free per device (-fitt)")

    def place(self, model, params):
        # a starting point only (everything on the accelerator); the engine decides, moebench records
        return build_placement(self.name, self.params_dict(params), model, deferred=True,
                               note="decided by the engine at load time")
