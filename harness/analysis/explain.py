"""`moebench explain` and the report's "Why" section: the performance model's prediction against what was
measured, per placement, and the terms that make two placements differ.

What the planner said of each configuration is read from the sweep's `configurations.json` (stored when the
sweep started: placements, devices, each test's workload; `harness.plan.stored`), so nothing is planned again
and neither the engines nor the GGUF files need to be there. A folder written before that file existed is
planned again from its `meta.json` (the one planner: the same placements and workloads the run had). Either way
the workloads are predicted with the calibration stored now for the engine, tool and device (`moebench
calibrate`), so a sweep measured before the calibration is explained too. A prediction outside the measured 95%
interval is "beyond noise": the measurement shows an effect the model lacks.

Pairs explained: for every parameter value n present in both, first-n-experts(n) against last-n-experts(n) (the
maintainers' question: why should the first N layers on the CPU beat the last N?), and the fastest placement
against the baselines cpu-moe and all-gpu.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.analysis.markdown import fmt, markdown_table
from harness.analysis.stats import measured_interval
from harness.config import BenchConfig
from harness.errors import UserError
from harness.intervals import noise_verdict
from harness.perf.configs import Predictor, PredictedTest, configuration_workload, predicted_splits, test_of
from harness.perf.model import TERM_LABELS
from harness.perf.workload import Workload
from harness.plan.planner import plan
from harness.plan.request import request_from_config
from harness.plan.stored import configuration_record, read_configurations, key_of_test
from harness.results.reader import read_runs
from harness.results.record import modelled_test

PAIR_STRATEGIES = ("first-n-experts", "last-n-experts")
# The baselines the fastest placement is explained against: the report's baselines (`harness.analysis.selection.
# BASELINES`) less engine-fit, whose placement the engine chooses when it loads, so the model has no terms for it.
EXPLAINED_BASELINES = ("cpu-moe", "all-gpu")

# a configuration's test -> (its workload, the graph splits the engine will log), or None where there is none
TestLookup = Callable[[str, str, int, int], "tuple[Workload, int] | None"]


@dataclass
class Explained:
    rows: pd.DataFrame                                   # per configuration and test
    pairs: list[dict] = field(default_factory=list)
    calibrations: list[str] = field(default_factory=list)
    problem: str = ""                                    # why nothing could be predicted

    def to_json(self) -> str:
        return json.dumps({"calibrations": self.calibrations, "problem": self.problem, "pairs": self.pairs,
                           "rows": json.loads(self.rows.to_json(orient="records"))}, indent=1)


def _stored(folder: Path) -> tuple[dict[str, dict], TestLookup] | None:
    """The configurations the sweep stored, and their tests' workloads as stored."""
    records = read_configurations(folder)
    if records is None:
        return None

    def lookup(cid: str, kind: str, tokens: int, depth: int):
        found = records[cid].get("tests", {}).get(key_of_test(kind, tokens, depth))
        if not found:
            return None
        planned = PredictedTest.from_dict(found)
        return planned.workload, planned.predicted_graph_splits

    return records, lookup


def _replanned(folder: Path) -> tuple[dict[str, dict], TestLookup]:
    """An older folder's configurations, planned again from its meta.json, with any test's workload."""
    config = BenchConfig.model_validate(json.loads((folder / "meta.json").read_text())["config"])
    confs = {conf.id: conf for conf in plan(request_from_config(config))}

    def lookup(cid: str, kind: str, tokens: int, depth: int):
        conf = confs[cid]
        test = test_of(kind, tokens, depth, conf, config.bench)
        w = configuration_workload(conf, test)
        return (w, predicted_splits(conf, test.ubatch)) if w is not None else None

    return {cid: configuration_record(conf, [], {}) for cid, conf in confs.items()}, lookup


def explain_folder(folder: Path) -> Explained:
    folder = Path(folder)
    try:
        records, lookup = _stored(folder) or _replanned(folder)
    except (OSError, ValueError, KeyError, UserError) as exc:
        return Explained(pd.DataFrame(), problem=f"cannot plan the sweep again: {exc}")
    predictor = Predictor.for_devices([(r["engine"], r["device"]) for r in records.values() if r.get("device")])
    raw = read_runs(folder)
    raw = raw[(raw["status"] == "ok") & raw["config_id"].isin(list(records))]
    rows = []
    for (cid, test_name), group in raw.groupby(["config_id", "test"], sort=False):
        conf, first = records[cid], group.iloc[0]
        modelled = modelled_test(first["n_prompt"], first["n_gen"])
        if modelled is None:
            continue  # combined tests are not modelled
        kind, tokens = modelled
        measured = measured_interval(group)  # the report's interval (one process: its repetitions)
        record = {"engine": conf["engine"], "tool": conf["tool"], "model": conf["model"],
                  "strategy": conf["strategy"] or "", "params": conf["params"], "test": test_name, "kind": kind,
                  "placement": conf["placement"] or (conf["strategy"] or ""),
                  "measured_tps": measured.mean, "ci_low": measured.low, "ci_high": measured.high,
                  "measured_median_tps": float(group["tps_mean"].astype(float).median()),
                  "processes": len(group), "graph_splits": first.get("graph_splits")}
        found = lookup(cid, kind, tokens, int(first.get("n_depth") or 0))
        if found is not None:
            w, splits = found
            _, pred = predictor.stored_prediction(conf["engine"], conf["device"], conf["tool"], conf["threads"], w)
            record.update(crossings_per_pass=w.crossings / max(w.passes, 1), predicted_tps=None,
                          predicted_graph_splits=splits)
            if pred is not None:
                beyond = not (measured.low <= pred.tps <= measured.high) if measured.n >= 2 else None
                record.update(predicted_tps=pred.tps, error_pct=100 * (pred.tps / measured.mean - 1),
                              beyond_noise=beyond, dominant=pred.dominant(),
                              terms_s={TERM_LABELS[k]: v for k, v in pred.terms_s.items()})
        rows.append(record)
    frame = pd.DataFrame(rows)
    calibrations = sorted({f"{c.engine} on {c.device} ({', '.join(c.tools)}; {c.created_at})"
                           for c in predictor.calibrations.values() if c is not None})
    problem = "" if calibrations else ("no calibration for this sweep's engines and devices: run "
                                       "`moebench calibrate` (with the sweep's --engine and --rpc-rig/--device)")
    return Explained(frame, _pairs(frame), calibrations, problem)


def _pairs(rows: pd.DataFrame) -> list[dict]:
    if rows.empty:
        return []
    out = []
    for (engine, tool, model, test), g in rows.groupby(["engine", "tool", "model", "test"], sort=False):
        by_name = {r["placement"]: r for _, r in g.iterrows()}
        first, last = PAIR_STRATEGIES
        for _, a in g[g["strategy"] == first].iterrows():
            b = next((r for _, r in g[g["strategy"] == last].iterrows() if r["params"] == a["params"]), None)
            if b is not None:
                out.append(_pair(a, b, engine, tool, model, test))
        best = g.loc[g["measured_tps"].idxmax()]
        for baseline in EXPLAINED_BASELINES:
            if baseline in by_name and best["placement"] != baseline:
                out.append(_pair(best, by_name[baseline], engine, tool, model, test))
    return out


def _pair(a, b, engine, tool, model, test) -> dict:
    verdict = noise_verdict(a["ci_low"], a["ci_high"], b["ci_low"], b["ci_high"])
    pair = {"engine": engine, "tool": tool, "model": model, "test": test, "a": a["placement"], "b": b["placement"],
            "measured_a": a["measured_tps"], "measured_b": b["measured_tps"], "verdict": verdict,
            "predicted_a": a.get("predicted_tps"), "predicted_b": b.get("predicted_tps")}
    terms_a, terms_b = a.get("terms_s"), b.get("terms_s")
    if isinstance(terms_a, dict) and isinstance(terms_b, dict):
        diff = {k: terms_a.get(k, 0.0) - terms_b.get(k, 0.0) for k in set(terms_a) | set(terms_b)}
        diff = dict(sorted(diff.items(), key=lambda kv: -abs(kv[1])))   # the biggest difference first
        pair["term_differences_s"] = diff
        pair["why"] = _why(a, b, diff, sum(abs(v) for v in diff.values()))
    return pair


def _why(a, b, diff: dict[str, float], total: float) -> str:
    if total <= 0:
        return (f"the model sees no difference: both do the same work per token on each device and cross "
                f"between devices as often ({a.get('crossings_per_pass', 0):.0f} times per pass)")
    term, seconds = next(iter(diff.items()))
    slower = a["placement"] if seconds > 0 else b["placement"]
    share = abs(seconds) / total
    return (f"{slower} spends more time on {term} ({share:.0%} of the predicted difference); crossings per pass "
            f"{a.get('crossings_per_pass', 0):.0f} vs {b.get('crossings_per_pass', 0):.0f}")


def explain_markdown(explained: Explained, top: int = 20) -> str:
    lines = ["## Why: the performance model against the measurements", ""]
    if explained.calibrations:
        lines += ["Calibrations: " + "; ".join(explained.calibrations), ""]
    if explained.problem:
        lines += [f"_{explained.problem}_", ""]
    rows = explained.rows
    if not rows.empty and "error_pct" in rows:
        rows = rows.dropna(subset=["error_pct"])
        shown = rows.copy()
        shown["abs_error"] = shown["error_pct"].abs()
        shown = shown.sort_values("abs_error", ascending=False).head(top)
        table = pd.DataFrame([[r["engine"], r["tool"], r["model"], r["placement"], r["test"], r["measured_tps"],
                               f"{fmt(r['ci_low'])}–{fmt(r['ci_high'])}", r["predicted_tps"], f"{r['error_pct']:+.1f}%",
                               "yes" if r.get("beyond_noise") is True else "", r.get("dominant", "")]
                              for _, r in shown.iterrows()],
                             columns=["engine", "tool", "model", "placement", "test", "measured t/s", "95% CI",
                                      "predicted t/s", "error", "beyond noise", "most time in"])
        errors = rows["error_pct"].abs().groupby(rows["kind"]).median().to_dict() if "error_pct" in rows else {}
        lines += ["Median absolute error: " + ", ".join(f"{k} {v:.1f}%" for k, v in errors.items()), ""]
        lines += [markdown_table(table), ""]
        lines += ["\"Beyond noise\": the prediction lies outside the measured 95% interval, an effect the model "
                  "does not have.", ""]
    for pair in explained.pairs:
        if "why" not in pair:
            continue
        verdict = {"a": f"{pair['a']} faster", "b": f"{pair['b']} faster", "tie": "within noise",
                   "untested": "untested"}[pair["verdict"]]
        lines.append(f"- {pair['engine']} {pair['tool']} {pair['model']} {pair['test']}: **{pair['a']}** "
                     f"{fmt(pair['measured_a'])} vs **{pair['b']}** {fmt(pair['measured_b'])} t/s "
                     f"({verdict}); predicted {fmt(pair['predicted_a'])} vs {fmt(pair['predicted_b'])}: "
                     f"{pair['why']}")
    return "\n".join(lines) + "\n"
