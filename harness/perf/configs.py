"""The performance model applied to the planner's configurations: a configuration's workload for a test, its
prediction from the calibration of its engine, tool and device, and the columns a results row gets."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import BenchSettings
from harness.perf.calibration import Calibration, device_key, load_calibration
from harness.perf.model import Prediction, predict, roofline_tps
from harness.perf.workload import MeasuredTest, Workload, layout_for, reported_splits, workload
from harness.plan.planner import Configuration
from harness.plan.stored import key_of_test

def test_of(kind: str, tokens: int, depth: int, conf: Configuration, bench: BenchSettings) -> MeasuredTest:
    """The model's view of a measured test: its depth as the tool fills the cache (llama-server generates after
    the sweep's first prompt, `Tool.model_depth`), its micro-batch for the tool's context."""
    tool = conf.engine_tool
    return MeasuredTest(kind, tokens, tool.model_depth(kind, depth, bench),
                        conf.knobs.effective_ubatch(tool.context_tokens(bench)))


def _placed(conf: Configuration) -> bool:
    """Whether the plan placed the configuration's weights (not the engine at load time: engine-fit)."""
    return conf.placement is not None and not conf.placement.deferred and conf.target is not None


def configuration_workload(conf: Configuration, test: MeasuredTest) -> Workload | None:
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


def planned_tests(predictor: Predictor, conf: Configuration, bench: BenchSettings) -> dict[str, dict]:
    """What the plan says of each test a configuration's rows can have (every prompt and generation size at
    each depth, and at depth 0, where llama-server's rows are), by `key_of_test`: the workload, the graph splits
    the engine will log, and where calibrated the predicted tokens/s and the generation roofline. Empty where
    the engine places at load time (engine-fit) or nothing was placed."""
    if not _placed(conf):
        return {}
    depths = sorted(set(bench.depth) | {0})
    tests = [("pp", n, d) for n in bench.prompt_tokens if n for d in depths]
    tests += [("tg", n, d) for n in bench.gen_tokens if n for d in depths]
    out, splits = {}, {}
    cal = predictor.calibration(conf)
    for kind, tokens, depth in tests:
        test = test_of(kind, tokens, depth, conf, bench)
        w, pred = predictor.prediction(conf, test)
        if test.ubatch not in splits:
            splits[test.ubatch] = predicted_splits(conf, test.ubatch)
        out[key_of_test(kind, tokens, depth)] = {
            "workload": w.to_dict(), "predicted_graph_splits": splits[test.ubatch],
            "predicted_tps": pred.tps if pred else None,
            "roofline_tps": roofline_tps(w, cal.peaks) if cal and cal.peaks else None}
    return out
