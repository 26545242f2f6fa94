"""What a tuning session is about (`TuneSettings`: model, engine, device, budget, objective, space), what it has
measured (`Measured`, `TuneState`) and the one objective score (`score`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.balanced_score import balanced_score
from harness.config import BenchConfig, BenchSettings, EngineSpec, ModelSpec, StrategySpec
from harness.config_devices import RpcRig
from harness.plan.memory import MemoryPrediction, predict_memory
from harness.plan.planner import Configuration, memory_settings
from harness.plan.request import PlanRequest
from harness.tune.space import Candidate
from harness.units import MIB

DEFAULT_SERVE_CTX = 4096   # the serving context when none is given (both engines' llama-server default -c)
MIN_MODEL_ERROR = 0.05      # the predicted upper bound is at least 5% above the prediction
ROUND_SIZE = 2              # points measured per round


@dataclass
class TuneSettings:
    model: dict                      # bench.yaml model entry
    engine: dict                     # bench.yaml engine entry
    rpc_rig: bool
    device: str | None
    vram_budget_mib: float
    objective: str = "tg"            # tg, pp or balanced
    depth: int = 0
    space: tuple[str, ...] = ()
    knobs: dict = field(default_factory=dict)
    max_runs: int = 12
    processes: int = 3
    out: Path = Path("results")
    name: str = "tune"
    prompt_tokens: int = 512
    gen_tokens: int = 128
    ctx: int = DEFAULT_SERVE_CTX     # the context the answer is served at (llama-server -c, per slot)
    parallel: int = 1                # llama-server -np: request slots, each with `ctx` tokens
    where_said: str = ""             # how the device and budget were found (`harness.tune.where`)

    @property
    def tool(self) -> str:
        return "llama-server" if self.rpc_rig and self.engine.get("dialect") == "ik" else "llama-bench"

    @property
    def fixed_knobs(self) -> dict:
        """The knobs given one value (not searched): the baselines run with them too."""
        return {k: v for k, v in self.knobs.items() if not isinstance(v, list)}

    def bench(self, knobs: dict | None = None) -> BenchSettings:
        """The tests of the session with `knobs` (None: the knobs as given, lists being axes)."""
        return BenchSettings(prompt_tokens=[self.prompt_tokens], gen_tokens=[self.gen_tokens], depth=[self.depth],
                             repetitions=1, processes=self.processes,
                             ctx=max(1024, self.prompt_tokens + self.gen_tokens + self.depth),
                             **(self.knobs if knobs is None else knobs))

    def serving_bench(self, knobs: dict | None = None) -> BenchSettings:
        """The settings the answer is served with: `ctx` per slot, `parallel` slots (llama-server's -c, -np)."""
        return self.bench(knobs).model_copy(update={"ctx": self.ctx, "concurrency": [self.parallel]})

    @property
    def serving(self) -> str:
        return f"-c {self.ctx * self.parallel}" + (f" -np {self.parallel}" if self.parallel > 1 else "")

    def serving_memory(self, conf: Configuration) -> MemoryPrediction | None:
        """What `conf` needs when served (KV cache and compute buffers at the serving context), not what the
        short measuring runs need; None where the engine places at load time."""
        if conf.placement is None or conf.placement.deferred or conf.target is None:
            return None
        settings = memory_settings(self.serving_bench({}), "llama-server", conf.knobs, conf.target)
        return predict_memory(conf.placement, conf.model.info, settings)

    def fits(self, conf: Configuration) -> bool:
        """Whether `conf` served at the session's context fits the budget on its accelerators."""
        memory = self.serving_memory(conf)
        return memory is None or memory.vram_bytes <= self.vram_budget_mib * MIB

    def request(self, strategies: list[dict], knobs: dict | None = None) -> PlanRequest:
        """The planning request of `strategies` (bench.yaml strategy entries) with `knobs`."""
        return PlanRequest(models=[ModelSpec(**self.model)], engines=[EngineSpec(**self.engine)], tools=[self.tool],
                           strategies=[StrategySpec(**spec) for spec in strategies], bench=self.bench(knobs),
                           devices=[self.device] if self.device else [],
                           rpc_rig=RpcRig() if self.rpc_rig else None)

    def config(self, strategies: list[dict], knobs: dict | None = None) -> BenchConfig:
        """The sweep that measures `strategies` with `knobs` into the session's results folder (its plan is
        `request`'s: the same settings, so the same configuration ids)."""
        request = self.request(strategies, knobs)
        return BenchConfig(name=self.name, output=self.out, models=request.models, engines=request.engines,
                           tools=request.tools, rpc_rig=request.rpc_rig, devices=request.devices,
                           strategies=request.strategies, bench=request.bench)


@dataclass
class Measured:
    config_id: str
    label: str
    spec: dict
    knobs: dict
    tps: dict[str, tuple[float, float, float]]  # kind -> (mean, ci low, ci high)
    failed: str = ""


@dataclass
class TuneState:
    candidates: list[Candidate]
    measured: dict[str, Measured] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)      # baseline name -> config id
    model_error: dict[str, float] = field(default_factory=dict)  # kind -> relative error bound
    stopped_because: str = ""


def score(tps: dict[str, float | None], objective: str, reference: dict[str, float]) -> float | None:
    """The objective of a point: its tg or pp tokens/s, or for `balanced` the geometric mean of both relative
    to the best measured (`harness.balanced_score`, the analysis's balanced best)."""
    if objective != "balanced":
        return tps.get(objective)
    if not tps.get("pp") or not tps.get("tg") or not reference.get("pp") or not reference.get("tg"):
        return None
    return balanced_score(tps["pp"], tps["tg"], reference["pp"], reference["tg"])
