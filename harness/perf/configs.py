"""The performance model applied to the planner's configurations: a configuration's workload for a test, its
prediction from the calibration of its engine, tool and device, and the columns a results row gets."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import BenchSettings
from harness.perf.calibration import Calibration, device_key, load_calibration
from harness.perf.model import Prediction, predict, roofline_tps
from harness.perf.workload import MeasuredTest, Workload, layout_for, reported_splits, workload
from harness.plan.planner import Configuration

def test_of(kind: str, tokens: int, depth: int, conf: Configuration, bench: BenchSettings) -> MeasuredTest:
    """The model's view of a measured test: its depth as the tool fills the cache (llama-server generates after
    the sweep's first prompt, `Tool.model_depth`), its micro-batch for the tool's context."""
    tool = conf.engine_tool
    return MeasuredTest(kind, tokens, tool.model_depth(kind, depth, bench),
                        conf.knobs.effective_ubatch(tool.context_tokens(bench)))


def configuration_workload(conf: Configuration, test: MeasuredTest) -> Workload | None:
    """The workload of a planned configuration, or None where the engine decides the placement at load time
    (engine-fit), or nothing was placed."""
    if conf.placement is None or conf.placement.deferred or conf.target is None:
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
        found: dict[tuple[str, str], Calibration | None] = {}
        for conf in confs:
            if conf.target is not None:
                key = (conf.engine.name, device_key(conf.target.buffer_type))
                if key not in found:
                    found[key] = load_calibration(*key)
        return cls(found)

    def calibration(self, conf: Configuration) -> Calibration | None:
        if conf.target is None:
            return None
        return self.calibrations.get((conf.engine.name, device_key(conf.target.buffer_type)))

    def prediction(self, conf: Configuration, test: MeasuredTest) -> tuple[Workload, Prediction | None] | None:
        w = configuration_workload(conf, test)
        if w is None:
            return None
        cal = self.calibration(conf)
        constants = cal.constants_for(conf.tool, conf.threads) if cal else None
        return w, (predict(w, constants) if constants else None)

    def columns(self, conf: Configuration, test: MeasuredTest, measured_tps: float | None,
                graph_splits: int | None) -> dict:
        """The row's model columns: the engine's graph splits and the model's, the prediction for the row's
        own test, the generation roofline and the measured share of it."""
        out: dict = {"graph_splits": graph_splits}
        found = self.prediction(conf, test)
        if found is None:
            return out
        w, pred = found
        out["predicted_graph_splits"] = predicted_splits(conf, test.ubatch)
        if pred is not None:
            out[f"predicted_{test.kind}_tps"] = round(pred.tps, 3)
        cal = self.calibration(conf)
        roof = roofline_tps(w, cal.peaks) if cal and cal.peaks else None
        if roof:
            out["roofline_tg_tps"] = round(roof, 3)
            if measured_tps:
                out["efficiency_pct"] = round(100 * measured_tps / roof, 2)
        return out
