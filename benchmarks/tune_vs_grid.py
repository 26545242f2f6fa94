"""Does `moebench tune` find what the full grid finds, with far fewer runs?

For each model (tiny-glm; `small`, 16 layers) and objective (tg, pp), with a VRAM budget half way between what
cpu-moe and all-gpu need on the accelerator (everything on the accelerator is ruled out): run the full grid of the tuner's space with the ordinary runner, then tune, and
print the tuner's best as the grid measured it, the grid's best, their ratio, the tuner's runs as a share of the
feasible grid, and the tuner's gain over engine-fit with its noise verdict. Goals (issue 13): within 5% of the
grid's best using <= 25% of its runs, never behind engine-fit beyond noise.

    python benchmarks/tune_vs_grid.py [--engine mainline] [--processes 3] [--out DIR]

Run it alone on the machine: it measures (the RPC rig; calibrates first when no calibration is stored).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.intervals import interval  # noqa: E402
from harness.config import ModelSpec  # noqa: E402
from harness.plan.planner import plan, resolve_model  # noqa: E402
from harness.results.reader import read_runs  # noqa: E402
from harness.results.record import parse_test  # noqa: E402
from harness.runner.sweep import PrintProgress, run_sweep  # noqa: E402
from harness.tune.answer import write_answer  # noqa: E402
from harness.tune.search import Tuner  # noqa: E402
from harness.tune.settings import TuneSettings  # noqa: E402
from harness.tune.space import space_strategies  # noqa: E402

CASES = {  # model -> the families searched (the grid of `small`'s full default space would take hours here)
    "tiny-glm": ("first-n-experts", "last-n-experts", "head-tail-experts", "partial-experts", "gpu-layers"),
    "small": ("first-n-experts", "last-n-experts", "gpu-layers"),
}
BUDGET_SHARE = 0.5   # of the way from what cpu-moe needs on the accelerator to what all-gpu needs


RUN_SHARE = 0.25     # the tuner's run budget: a quarter of the feasible grid (the goal), baselines included


def settings_for(model: str, engine: str, budget: float, objective: str, out: Path, processes: int, name: str,
                 max_runs: int = 12):
    return TuneSettings({"synth": model}, {"name": engine, "dialect": "ik" if engine.startswith("ik") else "mainline"}, True, None, budget, objective, 0, CASES[model], {},
                        max_runs=max_runs, processes=processes, out=out, name=name)


def budget_for(model: str, engine: str, out: Path) -> float:
    """Half way between the accelerator memory cpu-moe and all-gpu are predicted to need: everything on the
    accelerator is ruled out, many expert placements are not (on tiny models the fixed buffers are most of it)."""
    probe = settings_for(model, engine, 1e9, "tg", out, 1, "probe")
    need = {name: plan(probe.request([{"name": name}]))[0].memory.vram_bytes / 2**20
            for name in ("all-gpu", "cpu-moe")}
    return round(need["cpu-moe"] + BUDGET_SHARE * (need["all-gpu"] - need["cpu-moe"]), 1)


def grid(model: str, engine: str, budget: float, out: Path, processes: int, quiet) -> tuple[pd.DataFrame, int]:
    s = settings_for(model, engine, budget, "tg", out, processes, f"grid-{model}")
    info = resolve_model(ModelSpec(**s.model), write=True).info
    config = s.config(space_strategies(info, s.space))
    feasible = [conf.id for conf in plan(s.request(space_strategies(info, s.space))) if not conf.error
                and s.fits(conf)]
    config = config.model_copy(update={"vram_budget_mib": budget})
    folder = run_sweep(config, out, PrintProgress(quiet), resume=True)
    rows = read_runs(folder)
    rows = rows[(rows["status"] == "ok") & rows["config_id"].isin(feasible)].copy()
    rows["kind"] = rows["test"].map(lambda t: parse_test(t)["kind"])
    per = rows.groupby(["config_id", "placement", "kind"])["tps_mean"].apply(list).reset_index()
    per["mean"] = [interval(v).mean for v in per["tps_mean"]]
    return per, len(feasible)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="mainline")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--models", nargs="+", default=list(CASES))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="moebench-tune-"))
    quiet = print if args.verbose else (lambda *_: None)
    lines = []
    for model in args.models:
        budget = budget_for(model, args.engine, out)
        t0 = time.monotonic()
        per, feasible = grid(model, args.engine, budget, out, args.processes, quiet)
        grid_s = time.monotonic() - t0
        print(f"{model}: budget {budget} MiB, {feasible} feasible points, grid measured in {grid_s:.0f} s")
        for objective in ("tg", "pp"):
            t0 = time.monotonic()
            s = settings_for(model, args.engine, budget, objective, out, args.processes, f"tune-{model}-{objective}",
                             max_runs=max(3, int(RUN_SHARE * feasible)))
            tuner = Tuner(s, report=quiet, progress=PrintProgress(quiet))
            state = tuner.run()
            answer = write_answer(tuner, state, out / s.name)
            mine = per[per["kind"] == objective].set_index("config_id")["mean"]
            best_cid = tuner.best(state)[0]
            tuned_on_grid = mine.get(best_cid)
            grid_best = mine.max()
            fit = answer["best"]["gain_over"].get("engine-fit") or {}
            runs = len(state.measured)
            lines.append({"model": model, "objective": objective, "budget_mib": budget,
                          "tuner_best": answer["best"]["label"], "tuner_best_on_grid": tuned_on_grid,
                          "grid_best": per[(per["kind"] == objective)].sort_values("mean").iloc[-1]["placement"],
                          "grid_best_tps": grid_best,
                          "ratio": (tuned_on_grid / grid_best) if tuned_on_grid else None,
                          "runs": runs, "feasible": feasible, "runs_share": runs / feasible,
                          "gain_over_engine_fit": fit.get("ratio"), "vs_engine_fit": fit.get("verdict"),
                          "stopped": state.stopped_because[:40], "tune_s": round(time.monotonic() - t0)})
    table = pd.DataFrame(lines)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 3):
        print(table.to_string(index=False))
    print("\ngoals: ratio >= 0.95, runs_share <= 0.25 (baselines included), never behind engine-fit beyond noise")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
