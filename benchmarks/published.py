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
import math
import statistics
import sys
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
from harness.perf.described import DescribedTest, described_layout, predict_described  # noqa: E402
from harness.perf.priors import PRIOR, Efficiencies  # noqa: E402
from strategies.registry import get_strategy  # noqa: E402

TABLES = Path(__file__).resolve().parent / "published"
ASSUMED_RAM = "ddr5-5600x2"     # a current desktop's dual-channel DDR5, where a table does not say
ASSUMED_CORES = 8
DEFAULT_TG_TOKENS = 128         # llama-bench's default where a table gives no generation length
FITTED = ("cpu_read", "gpu_read", "bus", "gpu_flops", "cpu_gflops_per_core", "crossing_s")


@dataclass
class Row:
    table: str
    label: str
    kind: str
    layout: object
    test: DescribedTest
    tps: float | None                  # the published mean, None where only a ratio was posted
    ratio: float | None                # the published ratio to the table's first row


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
            rows.append(Row(path.stem, label, kind, layout, DescribedTest(kind, tokens, 0, entry["ubatch"]),
                            statistics.fmean(published) if published else None, entry.get(f"{kind}_ratio")))
    return Table(path.stem, model, profile, assumptions, rows)


def predicted(table: Table, eff: Efficiencies) -> list[float]:
    return [predict_described(table.model, r.layout, r.test, table.profile, eff).tps for r in table.rows]


def fit(tables: list[Table]) -> Efficiencies:
    """Efficiencies minimizing the squared log error of the absolute rows of `tables` (starting at PRIOR)."""
    start = np.log([getattr(PRIOR, name) for name in FITTED])

    def residuals(x: np.ndarray) -> np.ndarray:
        eff = PRIOR.with_values(**dict(zip(FITTED, np.exp(x))))
        out = []
        for table in tables:
            for row, tps in zip(table.rows, predicted(table, eff)):
                if row.tps:
                    out.append(math.log(tps / row.tps))
        out += list(0.1 * (x - start))   # a weak pull to the prior where the tables say nothing
        return np.array(out)

    lower = start - np.log(20.0)
    upper = np.minimum(start + np.log(20.0), [0.0 if n not in ("cpu_gflops_per_core", "crossing_s") else 50.0
                                              for n in FITTED])
    solution = least_squares(residuals, start, bounds=(lower, upper))
    return PRIOR.with_values(**dict(zip(FITTED, np.exp(solution.x))))


def judge(table: Table, values: list[float]) -> dict:
    """Errors, ratio errors and the order of one table's rows under one set of predictions."""
    out: dict = {}
    for kind in ("pp", "tg"):
        pairs = [(r, v) for r, v in zip(table.rows, values) if r.kind == kind]
        absolute = [abs(v / r.tps - 1) * 100 for r, v in pairs if r.tps]
        first_r, first_v = pairs[0]
        ratio_err, order = [], []
        for r, v in pairs[1:]:
            published = r.ratio if r.ratio is not None else (r.tps / first_r.tps if r.tps and first_r.tps else None)
            if published is None:
                continue
            ratio_err.append(abs((v / first_v) / published - 1) * 100)
            order.append((published, v / first_v))
        out[kind] = {"median_abs_error_pct": statistics.median(absolute) if absolute else None,
                     "worst_ratio_error_pct": max(ratio_err) if ratio_err else None,
                     "order_right": _order_right([(1.0, 1.0)] + order)}
    return out


def _order_right(points: list[tuple[float, float]]) -> str:
    if len(points) < 2:
        return "-"
    if len(points) == 2:
        (a, b), (c, d) = points
        return "yes" if (c - a) * (d - b) > 0 else "no"
    rho = spearmanr([p for p, _ in points], [q for _, q in points]).statistic
    return f"rho {rho:.2f}"


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
        print(f"{name}: " + "; ".join(
            f"{kind} median |error| {_fmt(v['median_abs_error_pct'])}%, worst ratio error "
            f"{_fmt(v['worst_ratio_error_pct'])}%, order {v['order_right']}" for kind, v in verdict.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, default=TABLES)
    parser.add_argument("--no-fit", action="store_true", help="only the shipped prior, no leave-one-out fit")
    args = parser.parse_args()
    tables, skipped = [], []
    for path in sorted(args.tables.glob("*.yaml")):
        try:
            tables.append(load_table(path))
        except UserError as exc:
            skipped.append(f"{path.stem}: {exc}")
    for table in tables:
        runs = {"prior": predicted(table, PRIOR)}
        others = [t for t in tables if t is not table]
        if not args.no_fit and others:
            runs["leave-one-out"] = predicted(table, fit(others))
        report(table, runs)
    if not args.no_fit and tables:
        print("\nefficiencies fitted on all tables: "
              + ", ".join(f"{n}={getattr(fit(tables), n):.3g}" for n in FITTED))
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
