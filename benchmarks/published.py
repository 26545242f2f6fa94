"""How well the performance model predicts real GPU boxes it never saw: the published sweeps.

For every table in `benchmarks/published/*.yaml` (the figures of `../shared/published/*.md`, as posted, in a form a
program reads), every row is predicted from the table's hardware (a `harness.hardware` profile) and the model's
real shapes (a full-size `synth` preset's tensor list: nothing is written), with the prior constants
(`harness.perf.priors`) in two ways: the stated guess (`GUESS`), and efficiencies fitted leave-one-table-out (the
table being predicted never in the fit: least squares on the log of tokens/s, and of the ratio where a table gives
only that, over the other tables' rows; the box terms, upload and RAM read shares, fitted per table and a new box
given their geometric mean: `fit_boxes`). Printed per table: each row's published and predicted tokens/s, each
placement's ratio to the table's first row (predicted against published), the median absolute error of pp and
tg, the order of the rows (Spearman where a table has three rows or more, else the sign of the difference), and
what the table asks of the box terms (`diagnose`: the upload and RAM rates that alone would make its rows right).
Goals (issue 21): ratios within 10%, absolute within 20%, the order right in every table. A table whose hardware
is not fully given (RAM, cores) is predicted with the stated assumptions and counted separately.

    python benchmarks/published.py [--tables DIR ...] [--no-fit] [--write]

`--write` stores the fit on every table in `harness/perf/prior_fit.json`, which `harness.perf.priors` ships as
`PRIOR`.

It measures nothing (no engine runs): run it anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # published_fit

from harness.errors import UserError  # noqa: E402
from harness.hardware.profile import profile_from_args  # noqa: E402
from harness.models.inspect import inspect_preset  # noqa: E402
from harness.perf.described import (DescribedTest, described_layout, overrides_to_cpu,  # noqa: E402
                                     pinned_host_weights, quantities)
from harness.perf.peaks import PCIE_LANE_BYTES_S  # noqa: E402
from harness.perf.priors import FIT_FILE, GUESS, Efficiencies  # noqa: E402
from published_fit import fit, needed, predicted, published_ratio, write_fit  # noqa: E402
from strategies.registry import get_strategy  # noqa: E402

TABLES = Path(__file__).resolve().parent / "published"
ASSUMED_RAM = "ddr5-5600x2"     # a current desktop's dual-channel DDR5, where a table does not say
ASSUMED_CORES = 8
DEFAULT_TG_TOKENS = 128         # llama-bench's default where a table gives no generation length
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
    assumptions = list(data.get("assumed", []))     # what the table's own notes assume (with their reasons)
    if not hw.get("ram"):
        assumptions.append(f"RAM {ASSUMED_RAM} (not given)")
    if not hw.get("cores"):
        assumptions.append(f"{ASSUMED_CORES} cores (not given)")
    profile = profile_from_args(hw["gpu"], hw.get("ram") or ASSUMED_RAM, hw.get("cores") or ASSUMED_CORES)
    model = inspect_preset(data["model"])
    cache = data.get("cache_type", "f16")
    rows = []
    for entry in data["rows"]:
        strategy = get_strategy(entry["strategy"])
        placement = strategy.place(model, strategy.Params(**entry.get("params", {})))
        params = ",".join(f"{k}={v}" for k, v in entry.get("params", {}).items())
        label = f"{entry['strategy']}({params}) ub={entry['ubatch']}"
        layout = described_layout(placement, dialect=data["engine"], op_offload=entry.get("op_offload", True),
                                  cache_type_k=cache, cache_type_v=cache)
        pinned, active_only, assumed = host_weights(data, entry, placement)
        if assumed and assumed not in assumptions:
            assumptions.append(assumed)
        label += ("" if pinned else " pageable") + ("" if active_only else " no-ooae")
        for kind, tokens in (("pp", entry["pp_tokens"]), ("tg", entry.get("tg_tokens", DEFAULT_TG_TOKENS))):
            published = entry.get(f"{kind}_tps")
            test = DescribedTest(kind, tokens, 0, entry["ubatch"])
            rows.append(Row(path.stem, label, kind, layout, test,
                            statistics.fmean(published) if published else None, entry.get(f"{kind}_ratio"),
                            quantities(model, layout, test, pinned=pinned, active_experts_only=active_only)))
    return Table(path.stem, model, profile, assumptions, rows)


def host_weights(data: dict, entry: dict, placement) -> tuple[bool, bool, str | None]:
    """Whether a row's RAM-held weights are pinned, whether its uploads copy only the active experts, and the
    assumption made where the source does not say. `pinned` (row or table) where the source says
    (`GGML_CUDA_NO_PINNED=1`: false); else the engine's rule at the row's `mmap` (`pinned_host_weights`), where
    the table gives `mmap` or the rule does not depend on it (ik pins overridden weights either way); else
    (mainline, mmap not given) the default, mmap on: pageable, said as an assumption.
    `active_experts_only` false for ik's `-no-ooae`."""
    active_only = bool(entry.get("active_experts_only", True))
    pinned = entry.get("pinned", data.get("pinned"))
    if pinned is not None:
        return bool(pinned), active_only, None
    mmap = entry.get("mmap", data.get("mmap"))
    overrides = overrides_to_cpu(placement)
    if mmap is None and pinned_host_weights(data["engine"], mmap=True, overrides=overrides) != \
            pinned_host_weights(data["engine"], mmap=False, overrides=overrides):
        return False, active_only, "mmap not given: the engine's default (on), RAM-held weights pageable"
    return pinned_host_weights(data["engine"], mmap=True if mmap is None else mmap, overrides=overrides), \
        active_only, None


def judge(table: Table, values: list[float]) -> dict:
    """Per kind: the median absolute error, each placement's predicted ratio to the first row against the
    published one, and the order (Spearman over the rows with a published figure)."""
    out: dict = {}
    for kind in ("pp", "tg"):
        idx = [i for i, r in enumerate(table.rows) if r.kind == kind]
        first = values[idx[0]]
        absolute = [abs(values[i] / table.rows[i].tps - 1) * 100 for i in idx if table.rows[i].tps]
        ratios = [(table.rows[i].label, published_ratio(table, i), values[i] / first) for i in idx[1:]]
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
    predicted = [q for _, q in points]
    if max(predicted) - min(predicted) < 1e-3:
        return "tie predicted"
    rho = spearmanr([p for p, _ in points], predicted).statistic
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


def diagnose(table: Table, eff: Efficiencies) -> None:
    """What the table's rows ask of the two terms that decide them: the upload rate (pp) and the RAM read
    rate (tg), as GB/s, against the peaks of the profile."""
    gpu, ram = table.profile.gpu, table.profile.ram
    pcie = PCIE_LANE_BYTES_S.get(gpu.pcie_gen, 0.0) * gpu.pcie_lanes / 1e9
    bus = needed(table, eff, "bus", "pp")
    cpu = needed(table, eff, "cpu_read", "tg")
    pageable = all(not r.quantities.pinned for r in table.rows if r.kind == "pp" and r.quantities.uploads)
    pcie *= eff.pageable if pageable else 1.0     # the rate a pageable upload reaches at that share
    print(f"asks: uploads at {bus * pcie:.1f} GB/s ({bus:.2f} of PCIe {gpu.pcie_gen}.0 x{gpu.pcie_lanes}'s "
          f"{pcie:.1f}{' pageable' if pageable else ''}; fitted {eff.bus:.2f}) for its pp, "
          f"RAM read at {cpu * ram.peak_gb_s:.1f} GB/s "
          f"({cpu:.2f} of the {'assumed ' if any('RAM' in a for a in table.assumptions) else ''}"
          f"{ram.peak_gb_s:.1f}; fitted {eff.cpu_read:.2f}) for its tg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=Path, action="append",
                        help=f"a folder of tables (*.yaml), repeatable; default {TABLES}")
    parser.add_argument("--no-fit", action="store_true", help="only the guess, no leave-one-out fit")
    parser.add_argument("--write", action="store_true", help=f"store the fit on every table in {FIT_FILE.name}")
    args = parser.parse_args()
    started = time.monotonic()
    tables, skipped = [], []
    for path in sorted(p for folder in (args.tables or [TABLES]) for p in folder.glob("*.yaml")):
        try:
            tables.append(load_table(path))
        except UserError as exc:
            skipped.append(f"{path.stem}: {exc}")
    every = fit(tables) if tables and not args.no_fit else None
    for table in tables:
        runs = {"guess": predicted(table, GUESS)}
        others = [t for t in tables if t is not table]
        if not args.no_fit and others:
            runs["leave-one-out"] = predicted(table, fit(others))
        report(table, runs)
        if every is not None:
            diagnose(table, every)
    if not args.no_fit and tables:
        every = write_fit(tables) if args.write else every
        print("\nefficiencies fitted on every table: " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={ {t: round(f, 3) for t, f in v.items()} }"
            for k, v in every.to_dict().items()))
        if args.write:
            print(f"written to {FIT_FILE}")
    for line in skipped:
        print(f"skipped {line}")
    print(f"\n{time.monotonic() - started:.1f} s (arithmetic only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
