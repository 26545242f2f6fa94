"""The search of `moebench tune`: rank the feasible points with the performance model, measure the most promising,
refit the model's constants on what was measured, and stop when the best measured point's 95% interval lies
above every unmeasured point's predicted upper bound (the prediction raised by the model's error so far), or
when the run budget is spent. The baselines `engine-fit` (the engine's own `--fit`, told to leave free what the
budget does not allow) and `cpu-moe` are always measured.

Every measurement goes through the ordinary runner into one results folder (fresh processes in interleaved
rounds, failed rows for crashes), so `moebench report` and the notebooks work on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Callable

import numpy as np
import pandas as pd

from harness.analysis.stats import measured_interval
from harness.config import ModelSpec
from harness.errors import UserError
from harness.perf.calibration import calibration_dir
from harness.perf.configs import Predictor, configuration_workload, test_of
from harness.perf.fit import fit_constants
from harness.perf.model import predict
from harness.plan.planner import plan, resolve_model
from harness.runner.sweep import run_sweep
from harness.tune.calibrate import calibrate, calibration_configs, stored_samples
from harness.results.reader import read_runs
from harness.results.record import parse_test
from harness.tune.settings import MIN_MODEL_ERROR, ROUND_SIZE, Measured, TuneSettings, TuneState, score
from harness.tune.space import Candidate, space_strategies, spec_of
from harness.tune.where import accelerator_free_mib

def plan_space(settings: TuneSettings) -> tuple[list[Candidate], int]:
    """Every feasible point of the space with its workloads, and how many points were planned."""
    model = resolve_model(ModelSpec(**settings.model), write=True)
    request = settings.request(space_strategies(model.info, settings.space))
    planned = plan(request)
    out = []
    for conf in planned:
        if conf.error or conf.placement is None or not settings.fits(conf):
            continue
        workloads = {kind: configuration_workload(conf, test_of(kind, tokens, settings.depth, conf, request.bench))
                     for kind, tokens in (("pp", settings.prompt_tokens), ("tg", settings.gen_tokens))}
        out.append(Candidate(conf.id, conf, spec_of(conf), {}, workloads))
    return out, len(planned)


def knob_values_of(conf) -> dict:
    """The knob values a configuration was planned with, as bench.yaml settings (defaults left out)."""
    return {k: v for k, v in asdict(conf.knobs).items()
            if v is not None and not (k.startswith("cache_type") and v == "f16")}


class Tuner:
    """One tuning session: `run()` returns the state with everything measured and why it stopped."""

    def __init__(self, settings: TuneSettings, report: Callable[[str], None], progress=None):
        self.settings = settings
        self.report = report
        self.progress = progress

    # -- measuring -------------------------------------------------------------------------------------------
    def _measure(self, points: list[tuple[dict, dict]]) -> None:
        """Run the given (strategy entry, knob values) points: one sweep per distinct knob values, all into the
        tune's results folder (resumed, so a point is never measured twice)."""
        groups: dict[str, tuple[dict, list[dict]]] = {}
        for spec, knobs in points:
            key = repr(sorted(knobs.items()))
            groups.setdefault(key, (knobs, []))[1].append(spec)
        for knobs, specs in groups.values():
            run_sweep(self.settings.config(specs, knobs), self.settings.out, self.progress, resume=True)

    def _results(self) -> pd.DataFrame:
        folder = self.settings.out / self.settings.name
        return read_runs(folder) if (folder / "runs.csv").is_file() else pd.DataFrame()

    def _measured(self, rows: pd.DataFrame, cid: str, label: str, spec: dict, knobs: dict) -> Measured:
        mine = rows[rows["config_id"] == cid] if not rows.empty else rows
        failed = mine[mine["status"] != "ok"] if not mine.empty else mine
        tps = {}
        for kind in ("pp", "tg"):
            ok = mine[(mine["status"] == "ok") & (mine["test"].map(lambda t: parse_test(t)["kind"]) == kind)] \
                if not mine.empty else mine
            if len(ok):
                found = measured_interval(ok)  # the report's interval
                tps[kind] = (found.mean, found.low, found.high)
        reason = "" if tps else (_short(str(failed["reason"].iat[0])) if len(failed) else "no rows")
        return Measured(cid, label, spec, knobs, tps, reason)

    # -- the model -------------------------------------------------------------------------------------------
    def _calibration_samples(self) -> list:
        """What the calibration measured: the full calibration's sweeps, or the quick one's, whichever exist."""
        s = self.settings
        configs = [config for quick in (False, True)
                   for config in calibration_configs(s.engine, rpc_rig=s.rpc_rig, device=s.device, tools=[s.tool],
                                                     processes=1, out=calibration_dir() / "runs", quick=quick)]
        return stored_samples(configs).get(s.tool, [])

    def _refit(self, state: TuneState, base: list, bus_s_per_byte: float) -> None:
        """Refit the constants on the calibration plus everything measured here; predict every candidate again
        and set the model's error bound per kind from the measured points."""
        tuned = []
        for c in state.candidates:
            m = state.measured.get(c.config_id)
            for kind, w in c.workloads.items():
                if m and kind in m.tps and w is not None:
                    tuned.append((c.label, w, m.tps[kind][0]))
        constants = fit_constants(base + tuned * 2, bus_s_per_byte).constants  # what was measured here counts twice
        for c in state.candidates:
            c.predicted = {kind: (predict(w, constants).tps if w is not None else None) for kind, w in c.workloads.items()}
        for kind in ("pp", "tg"):
            errors = [abs(c.predicted[kind] / state.measured[c.config_id].tps[kind][0] - 1)
                      for c in state.candidates if c.config_id in state.measured
                      and kind in state.measured[c.config_id].tps and c.predicted.get(kind)]
            # twice the typical error, at most the worst seen: one configuration caught in a slow stretch of the
            # machine must not keep the search from ever stopping
            typical = 2 * float(np.median(errors)) if errors else 0.0
            state.model_error[kind] = max(MIN_MODEL_ERROR, min(typical, max(errors, default=0.0)))

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> TuneState:
        s = self.settings
        candidates, planned = plan_space(s)
        if not candidates:
            raise UserError(f"no placement in the space ({', '.join(s.space)}) is predicted to fit "
                            f"{s.vram_budget_mib:g} MiB; raise --vram-budget-mib")
        self.report(f"{len(candidates)} of {planned} points fit {s.vram_budget_mib:g} MiB at {s.serving}")
        bus = self._calibrated(candidates[0].conf).bus_s_per_byte
        state = TuneState(candidates)
        base = self._calibration_samples()
        self._baselines(state)
        while True:
            self._refit(state, base, bus)
            best = self.best(state)
            left = [c for c in state.candidates if c.config_id not in state.measured]
            upper = self._upper_bounds(state, left)
            runs = len(state.measured)
            state.stopped_because = stop_reason(best[1] if best else None, list(upper.values()), runs, s.max_runs)
            if state.stopped_because:
                break
            ranked = sorted(left, key=lambda c: -(upper.get(c.config_id) or -1))
            chosen = ranked[:max(1, min(ROUND_SIZE, s.max_runs - runs))]
            for c in chosen:
                why = (f"predicted {s.objective} {_fmt(score(c.predicted, s.objective, self._reference(state)))}, "
                       f"upper bound {_fmt(upper.get(c.config_id))}")
                best_label = state.measured[best[0]].label if best else ""
                self.report(f"trying {c.label}: {why}" + (f"; best so far {best_label} {_fmt(best[2])} "
                                                         f"(95% CI low {_fmt(best[1])})" if best else ""))
            self._measure([(c.spec, knob_values_of(c.conf)) for c in chosen])
            rows = self._results()
            for c in chosen:
                state.measured[c.config_id] = self._measured(rows, c.config_id, c.label, c.spec,
                                                             knob_values_of(c.conf))
                if state.measured[c.config_id].failed:
                    self.report(f"  {c.label} failed: {state.measured[c.config_id].failed} (the search goes on)")
        return state

    def _calibrated(self, conf):
        """The constants of `conf`'s engine, tool and device; calibrated first when there are none."""
        s = self.settings
        cal = Predictor.for_configurations([conf]).calibration(conf)
        if cal is None or cal.constants_for(s.tool, conf.threads) is None:
            self.report(f"no calibration of {conf.engine.name} {s.tool} on this device: calibrating first")
            cal = calibrate(s.engine, rpc_rig=s.rpc_rig, device=s.device, tools=[s.tool], processes=s.processes,
                            progress=self.progress)
        return cal.tools[s.tool].constants

    def _baselines(self, state: TuneState) -> None:
        s = self.settings
        specs = [{"name": "engine-fit", "params": {"margin_mib": engine_fit_margin(s)}}, {"name": "cpu-moe"}]
        planned = {conf.strategy: (conf.id, conf) for conf in plan(s.request(specs, s.fixed_knobs))}
        if not s.fits(planned["cpu-moe"][1]):
            self.report(f"baseline cpu-moe does not fit {s.vram_budget_mib:g} MiB at {s.serving}: not measured")
            specs.pop()
        self.report("measuring the baselines: " + ", ".join(spec["name"] for spec in specs))
        self._measure([(spec, s.fixed_knobs) for spec in specs])
        rows = self._results()
        for spec in specs:
            cid, conf = planned[spec["name"]]
            state.baselines[spec["name"]] = cid
            label = conf.placement.describe() if conf.placement else spec["name"]
            state.measured[cid] = self._measured(rows, cid, label, spec, s.fixed_knobs)

    # -- answers ---------------------------------------------------------------------------------------------
    def _reference(self, state: TuneState) -> dict[str, float]:
        return {kind: max((m.tps[kind][0] for m in state.measured.values() if kind in m.tps), default=0.0)
                for kind in ("pp", "tg")}

    def best(self, state: TuneState) -> tuple[str, float, float, float] | None:
        """(config id, objective's 95% CI low, mean, high) of the best measured point, by mean; the interval is
        NaN with a single process."""
        ref = self._reference(state)
        scored = []
        for cid, m in state.measured.items():
            mean = score({k: v[0] for k, v in m.tps.items()}, self.settings.objective, ref)
            low = score({k: v[1] for k, v in m.tps.items()}, self.settings.objective, ref)
            high = score({k: v[2] for k, v in m.tps.items()}, self.settings.objective, ref)
            if mean is not None:
                scored.append((cid, low if low is not None else float("nan"), mean, high))
        return max(scored, key=lambda t: t[2]) if scored else None

    def _upper_bounds(self, state: TuneState, left: list[Candidate]) -> dict[str, float | None]:
        ref = self._reference(state)
        out = {}
        for c in left:
            raised = {k: (v * (1 + state.model_error.get(k, MIN_MODEL_ERROR)) if v else None)
                      for k, v in c.predicted.items()}
            out[c.config_id] = score(raised, self.settings.objective, ref)
        return out


def stop_reason(best_low: float | None, upper_bounds: list[float | None], runs: int, max_runs: int) -> str:
    """Why the search stops now ("" to go on): the best measured point's 95% interval lies above every unmeasured
    point's predicted upper bound (none left counts), or the run budget is spent."""
    if best_low is not None and not upper_bounds:
        return "every feasible point was measured"
    predictable = all(u is not None for u in upper_bounds)  # a point the model cannot predict must be measured
    has_interval = best_low is not None and not math.isnan(best_low)  # one process: no interval, no early stop
    if has_interval and predictable and best_low > max(upper_bounds):
        return "the best measured point's 95% interval lies above every unmeasured point's predicted upper bound"
    if runs >= max_runs:
        return f"the run budget (--max-runs {max_runs}) is spent"
    return ""


def engine_fit_margin(settings: TuneSettings) -> int:
    """The fit margin that leaves the engine's fit no more than the budget: the accelerator's free memory as the
    engine sees it (`harness.tune.where`), minus the budget."""
    _, free_mib = accelerator_free_mib(settings.engine, rpc_rig=settings.rpc_rig, device=settings.device)
    if free_mib is None:
        raise UserError(f"engine {settings.engine.get('name')} does not say how much memory its accelerator has "
                        "free; engine-fit cannot be told the budget")
    return max(int(free_mib - settings.vram_budget_mib), 0)


def _short(reason: str) -> str:
    """A failed row's reason in one line: its first line, and the engine's own error line when there is one."""
    parts = [p.strip() for p in reason.replace("\n", " | ").split(" | ") if p.strip()]
    errors = [p for p in parts if "error" in p.lower()]
    return (parts[0] + (f": {errors[-1]}" if errors and errors[-1] != parts[0] else ""))[:200] if parts else reason


def _fmt(value) -> str:
    return "-" if value is None else f"{value:,.3g}" if value < 10 else f"{value:,.1f}"
