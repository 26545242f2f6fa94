"""The performance model applied to the planner's configurations: a configuration's workload for a test, its
prediction from the calibration of its engine, tool and device, and what the plan says of each test its rows
will have (`PredictedTest`, stored in configurations.json; the rows' model columns are read from it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config import BenchSettings
from harness.knobs import DEFAULT_UBATCH
from harness.perf.calibration import Calibration, device_key, load_calibration
from harness.perf.model import Prediction, predict, roofline_tps
from harness.perf.workload import ModelledTest, Workload, layout_for, reported_splits, workload
from harness.plan.memory import padded_context
from harness.plan.planner import Configuration
from harness.plan.stored import key_of_test

def test_of(kind: str, tokens: int, depth: int, conf: Configuration, bench: BenchSettings) -> ModelledTest:
    """The model's view of a measured test: its depth as the tool fills the cache (llama-server generates after
    the sweep's first prompt, `Tool.model_depth`), its micro-batch for the tool's context."""
    tool = conf.engine_tool
    return ModelledTest(kind, tokens, tool.model_depth(kind, depth, bench),
                        conf.knobs.effective_ubatch(tool.context_tokens(bench)))


def _placed(conf: Configuration) -> bool:
    """Whether the plan placed the configuration's weights (not the engine at load time: engine-fit)."""
    return conf.placement is not None and not conf.placement.deferred and conf.target is not None


def configuration_workload(conf: Configuration, test: ModelledTest) -> Workload | None:
    """The workload of a planned configuration, or None where the engine decides the placement at load time
    (engine-fit), or nothing was placed."""
    if not _placed(conf):
        return None
    return workload(conf.model.info, layout_for(conf.placement, conf.target, conf.knobs), test)


def predicted_splits(conf: Configuration, ubatch: int) -> int:
    """The graph splits the engine will log for a placed configuration (`workload.reported_splits`)."""
    return reported_splits(conf.model.info, layout_for(conf.placement, conf.target, conf.knobs), ubatch)


@dataclass
class Predictor:
    """Calibrations by (engine, device key), loaded once per sweep; None where there is none."""

    calibrations: dict[tuple[str, str], Calibration | None]

    @classmethod
    def for_configurations(cls, confs: list[Configuration]) -> "Predictor":
        return cls.for_devices([(conf.engine.name, conf.target.buffer_type) for conf in confs
                                if conf.target is not None])

    @classmethod
    def for_devices(cls, pairs: list[tuple[str, str]]) -> "Predictor":
        """The calibrations of (engine name, buffer type) pairs."""
        found: dict[tuple[str, str], Calibration | None] = {}
        for engine, buffer_type in pairs:
            key = (engine, device_key(buffer_type))
            if key not in found:
                found[key] = load_calibration(*key)
        return cls(found)

    def calibration(self, conf: Configuration) -> Calibration | None:
        if conf.target is None:
            return None
        return self.calibrations.get((conf.engine.name, device_key(conf.target.buffer_type)))

    def stored_prediction(self, engine: str, device: str, tool: str, threads: int, w: Workload
                          ) -> tuple[Calibration | None, Prediction | None]:
        """A stored workload (configurations.json) predicted with the calibration of its engine, device (the
        buffer type) and tool, loaded once (None where there is none)."""
        key = (engine, device_key(device))
        if key not in self.calibrations:
            self.calibrations[key] = load_calibration(*key)
        cal = self.calibrations[key]
        constants = cal.constants_for(tool, threads) if cal else None
        return cal, (predict(w, constants) if constants else None)

    def prediction(self, conf: Configuration, test: ModelledTest) -> tuple[Workload, Prediction | None] | None:
        w = configuration_workload(conf, test)
        if w is None:
            return None
        cal = self.calibration(conf)
        constants = cal.constants_for(conf.tool, conf.threads) if cal else None
        return w, (predict(w, constants) if constants else None)


@dataclass(frozen=True)
class PredictedTest:
    """What the plan says of one test of a configuration: its workload, the graph splits the engine will log,
    and where calibrated the predicted tokens/s and the generation roofline (None for a prompt test)."""

    workload: Workload
    predicted_graph_splits: int
    predicted_tps: float | None
    roofline_tps: float | None

    def to_dict(self) -> dict[str, Any]:
        """As configurations.json stores it (`harness.plan.stored`)."""
        return {"workload": self.workload.to_dict(), "predicted_graph_splits": self.predicted_graph_splits,
                "predicted_tps": self.predicted_tps, "roofline_tps": self.roofline_tps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PredictedTest":
        return cls(Workload.from_dict(data["workload"]), data["predicted_graph_splits"],
                   data.get("predicted_tps"), data.get("roofline_tps"))


def planned_tests(predictor: Predictor, conf: Configuration, bench: BenchSettings) -> dict[str, PredictedTest]:
    """What the plan says of each test the configuration's rows will have (its tool's `row_tests`), by
    `key_of_test`. Empty where the engine places at load time (engine-fit) or nothing was placed."""
    if not _placed(conf):
        return {}
    tool = conf.engine_tool
    # the context the engine allocates, padded as far as either engine pads it (sweep-bench fills all of it)
    row_tests = tool.row_tests(bench, conf.knobs.ubatch or DEFAULT_UBATCH, padded_context(tool.context_tokens(bench)))
    out, splits = {}, {}
    cal = predictor.calibration(conf)
    for kind, tokens, depth in row_tests:
        test = test_of(kind, tokens, depth, conf, bench)
        w, pred = predictor.prediction(conf, test)
        if test.ubatch not in splits:
            splits[test.ubatch] = predicted_splits(conf, test.ubatch)
        out[key_of_test(kind, tokens, depth)] = PredictedTest(
            w, splits[test.ubatch], pred.tps if pred else None,
            roofline_tps(w, cal.peaks) if cal and cal.peaks else None)
    return out
