"""How well the performance model predicts real GPU boxes it never saw: the published sweeps.

For every table in `benchmarks/published/*.yaml` (the figures of `../shared/published/*.md`, as posted, in a form a
program reads), every row is predicted from the table's hardware (a `harness.hardware` profile) and the model's
real shapes (a full-size `synth` preset's tensor plan: nothing is written), with the prior constants
(`harness.perf.priors`) in two ways: the shipped `PRIOR`, and efficiencies fitted leave-one-table-out (the table
being predicted never in the fit: least squares on the log of tokens/s over the other tables' rows). Printed per
table: each row's published and predicted tokens/s, its ratio to the table's first row (published against
predicted), the median absolute error of pp and tg, and whether the order of the rows is right (Spearman where
a table has three rows or more, else the sign of the difference). Goals (issue 21): ratios within 10%, absolute
within 20%, the order right in every table. A table whose hardware is not fully given (RAM, cores) is predicted
with the stated assumptions and counted separately.

    python benchmarks/published.py [--tables DIR] [--no-fit]

It measures nothing (no engine runs): run it anywhere.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.errors import UserError  # noqa: E402
from harness.hardware.profile import profile_from_args  # noqa: E402
from harness.models.inspect import inspect_plan  # noqa: E402
from harness.perf.described import DescribedTest, described_layout, price, quantities  # noqa: E402
from harness.perf.priors import FIT_FILE, GUESS, Efficiencies  # noqa: E402
from strategies.registry import get_strategy  # noqa: E402

TABLES = Path(__file__).resolve().parent / "published"
ASSUMED_RAM = "ddr5-5600x2"     # a current desktop's dual-channel DDR5, where a table does not say
ASSUMED_CORES = 8
DEFAULT_TG_TOKENS = 128         # llama-bench's default where a table gives no generation length
# fitted: (name, lower, upper); a share of a peak at most 1 (GPU memory: 0.9, about the best a copy benchmark
# reaches), the prompt's arithmetic up to 4 (quantized products run on the int8 tensor cores)
FITTED = (("cpu_read", 0.05, 1.0), ("gpu_read", 0.05, 0.9), ("bus", 0.05, 1.0), ("gpu_flops", 0.01, 4.0),
          ("cpu_gflops_per_core", 1.0, 400.0), ("crossing_s", 1e-6, 1e-3), ("upload_s", 1e-6, 1e-2),
          ("routing_draws", 0.01, 1.0))
PULL = 0.1          # weak pull of each log efficiency to the guess where the tables say nothing
TYPE_PULL = 0.3     # pull of a type's arithmetic share to the shared one


@dataclass
class Row:
    table: str
    label: str
    kind: str
    layout: object
    test: DescribedTest
    tps: float | None                  # the published mean, None where only a ratio was posted
    ratio: float | None                # the published ratio to the table's first row
    quantities: object = None          # harness.perf.described.Quantities, computed once


@dataclass
class Table:
    name: str
    model: object
    profile: object
    assumptions: list[str]
    rows: list[Row]


def load_table(path: Path) -> Table:
    data = yaml.safe_load(path.read_text())
    hw = data["hardware"]
    assumptions = []
    if not hw.get("ram"):
        assumptions.append(f"RAM {ASSUMED_RAM} (not given)")
    if not hw.get("cores"):
        assumptions.append(f"{ASSUMED_CORES} cores (not given)")
    profile = profile_from_args(hw["gpu"], hw.get("ram") or ASSUMED_RAM, hw.get("cores") or ASSUMED_CORES)
    model = inspect_plan(data["model"])
    cache = data.get("cache_type", "f16")
    rows = []
    for entry in data["rows"]:
        strategy = get_strategy(entry["strategy"])
        placement = strategy.place(model, strategy.Params(**entry.get("params", {})))
        params = ",".join(f"{k}={v}" for k, v in entry.get("params", {}).items())
        label = f"{entry['strategy']}({params}) ub={entry['ubatch']}"
        layout = described_layout(placement, dialect=data["engine"], op_offload=entry.get("op_offload", True),
                                  cache_type_k=cache, cache_type_v=cache)
        for kind, tokens in (("pp", entry["pp_tokens"]), ("tg", entry.get("tg_tokens", DEFAULT_TG_TOKENS))):
            published = entry.get(f"{kind}_tps")
            test = DescribedTest(kind, tokens, 0, entry["ubatch"])
            rows.append(Row(path.stem, label, kind, layout, test,
                            statistics.fmean(published) if published else None, entry.get(f"{kind}_ratio"),
                            quantities(model, layout, test)))
    return Table(path.stem, model, profile, assumptions, rows)


def predicted(table: Table, eff: Efficiencies) -> list[float]:
    return [price(r.quantities, table.model, table.profile, eff).tps for r in table.rows]


def _first(table: Table, kind: str) -> int:
    return next(i for i, r in enumerate(table.rows) if r.kind == kind)


def _published_ratio(table: Table, i: int) -> float | None:
    row, first = table.rows[i], table.rows[_first(table, table.rows[i].kind)]
    if row.ratio is not None:
        return row.ratio
    return row.tps / first.tps if row.tps and first.tps else None


def fit_types(tables: list[Table]) -> list[str]:
    """The routed experts' types that get their own arithmetic share: those of two tables or more."""
    seen: dict[str, int] = {}
    for table in tables:
        kind = table.rows[0].quantities.expert_type
        seen[kind] = seen.get(kind, 0) + 1
    return sorted(k for k, n in seen.items() if k and n >= 2)


def identified(tables: list[Table]) -> list[str]:
    """The efficiencies the tables can tell: routing_draws only where a table varies the micro-batch (the
    uploads' share grows with it; at one size it trades with the bus share)."""
    varies = any(len({r.test.ubatch for r in t.rows}) > 1 for t in tables)
    return [n for n, _, _ in FITTED if n != "routing_draws" or varies]


def _efficiencies(x: np.ndarray, types: list[str], names: list[str]) -> Efficiencies:
    values = {n: float(v) for n, v in zip(names, np.exp(x[:len(names)]))}
    return GUESS.with_values(**values, gpu_flops_by_type={t: float(v) for t, v in zip(types, np.exp(x[len(names):]))})


def residuals(tables: list[Table], eff: Efficiencies) -> list[dict]:
    """Per row the log error of tokens/s where the table gives it, of the ratio to the first row where it
    gives only that."""
    out = []
    for table in tables:
        values = predicted(table, eff)
        for i, (row, value) in enumerate(zip(table.rows, values)):
            if row.tps:
                out.append({"table": table.name, "row": row.label, "test": f"{row.kind}{row.test.tokens}",
                            "published_tps": round(row.tps, 2), "predicted_tps": round(value, 2),
                            "log_error": math.log(value / row.tps)})
            elif row.ratio is not None:
                ratio = value / values[_first(table, row.kind)]
                out.append({"table": table.name, "row": row.label, "test": f"{row.kind}{row.test.tokens}",
                            "published_ratio": row.ratio, "predicted_ratio": round(ratio, 4),
                            "log_error": math.log(ratio / row.ratio)})
    return out


def fit(tables: list[Table]) -> Efficiencies:
    """Efficiencies minimizing the squared log error of `tables`' rows (starting at the guess, pulled weakly
    to it; a type's arithmetic share pulled to the shared one)."""
    types, names = fit_types(tables), identified(tables)
    bounds = {n: (lo, hi) for n, lo, hi in FITTED}
    guess = np.log([getattr(GUESS, n) for n in names] + [GUESS.gpu_flops] * len(types))
    lower = np.log([bounds[n][0] for n in names] + [0.01] * len(types))
    upper = np.log([bounds[n][1] for n in names] + [4.0] * len(types))
    start = np.clip(guess, lower + 1e-9, upper - 1e-9)
    shared, n = names.index("gpu_flops"), len(names)

    def objective(x: np.ndarray) -> np.ndarray:
        errors = [r["log_error"] for r in residuals(tables, _efficiencies(x, types, names))]
        return np.array(errors + list(PULL * (x[:n] - guess[:n])) + list(TYPE_PULL * (x[n:] - x[shared])))

    return _efficiencies(least_squares(objective, start, bounds=(lower, upper)).x, types, names)


def judge(table: Table, values: list[float]) -> dict:
    """Per kind: the median absolute error, each placement's predicted ratio to the first row against the
    published one, and the order (Spearman over the rows with a published figure)."""
    out: dict = {}
    for kind in ("pp", "tg"):
        idx = [i for i, r in enumerate(table.rows) if r.kind == kind]
        first = values[idx[0]]
        absolute = [abs(values[i] / table.rows[i].tps - 1) * 100 for i in idx if table.rows[i].tps]
        ratios = [(table.rows[i].label, _published_ratio(table, i), values[i] / first) for i in idx[1:]]
        ratios = [r for r in ratios if r[1] is not None]
        points = [(1.0, 1.0)] + [(p, q) for _, p, q in ratios]
        out[kind] = {"median_abs_error_pct": statistics.median(absolute) if absolute else None,
                     "ratios": ratios,
                     "worst_ratio_error_pct": max((abs(q / p - 1) * 100 for _, p, q in ratios), default=None),
                     "order": _order(points)}
    return out


def _order(points: list[tuple[float, float]]) -> str:
    """Spearman of the published against the predicted figures; with two rows, whether the sign agrees (a
    predicted tie with a published difference is not right)."""
    if len(points) < 2:
        return "-"
    if len(points) == 2:
        (a, b), (c, d) = points
        return "right" if (c - a) * (d - b) > 0 else ("tie predicted" if abs(d - b) < 1e-3 else "wrong")
    rho = spearmanr([p for p, _ in points], [q for _, q in points]).statistic
    return f"Spearman {rho:.2f}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(table: Table, runs: dict[str, list[float]]) -> None:
    print(f"\n## {table.name}: {table.model.name} on {table.profile.describe()}")
    if table.assumptions:
        print("assumed: " + "; ".join(table.assumptions))
    names = list(runs)
    print("| row | test | published t/s | " + " | ".join(f"{n} t/s" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for i, row in enumerate(table.rows):
        shown = _fmt(row.tps, 2) if row.tps else (f"ratio {row.ratio:.3f}" if row.ratio else "-")
        print(f"| {row.label} | {row.kind}{row.test.tokens} | {shown} | "
              + " | ".join(_fmt(runs[n][i], 2) for n in names) + " |")
    for name in names:
        verdict = judge(table, runs[name])
        for kind, v in verdict.items():
            ratios = "; ".join(f"{label} {q:.3f} (published {p:.3f})" for label, p, q in v["ratios"])
            print(f"{name} {kind}: median |error| {_fmt(v['median_abs_error_pct'])}%, order {v['order']}"
                  + (f", ratio to the first row: {ratios}" if ratios else ""))


def write_fit(tables: list[Table], eff: Efficiencies, path: Path = FIT_FILE) -> None:
    """The efficiencies fitted on every table, with the tables, the date and the residuals: what
    `harness.perf.priors` ships as `PRIOR`."""
    rows = residuals(tables, eff)
    for r in rows:
        r["error_pct"] = round(100 * (math.exp(r.pop("log_error")) - 1), 1)
    record = {"fitted_on": [f"{t.name} ({t.model.name}, {t.profile.gpu.name})" + (
                  f"; assumed {', '.join(t.assumptions)}" if t.assumptions else "") for t in tables],
              "date": datetime.date.today().isoformat(), "by": "benchmarks/published.py --write",
              "types_fitted": fit_types(tables), "efficiencies": eff.to_dict(), "residuals": rows}
    path.write_text(json.dumps(record, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, default=TABLES)
    parser.add_argument("--no-fit", action="store_true", help="only the guess, no leave-one-out fit")
    parser.add_argument("--write", action="store_true", help=f"store the fit on every table in {FIT_FILE.name}")
    args = parser.parse_args()
    started = time.monotonic()
    tables, skipped = [], []
    for path in sorted(args.tables.glob("*.yaml")):
        try:
            tables.append(load_table(path))
        except UserError as exc:
            skipped.append(f"{path.stem}: {exc}")
    for table in tables:
        runs = {"guess": predicted(table, GUESS)}
        others = [t for t in tables if t is not table]
        if not args.no_fit and others:
            runs["leave-one-out"] = predicted(table, fit(others))
        report(table, runs)
    if not args.no_fit and tables:
        every = fit(tables)
        print("\nefficiencies fitted on every table: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={ {t: round(f, 3) for t, f in v.items()} }"
            for k, v in every.to_dict().items()))
        if args.write:
            write_fit(tables, every)
            print(f"written to {FIT_FILE}")
    for line in skipped:
        print(f"skipped {line}")
    print(f"\n{time.monotonic() - started:.1f} s (arithmetic only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
