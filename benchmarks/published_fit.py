"""The fit of `benchmarks/published.py`: the prior's efficiencies fitted on published tables (`published.Table`:
rows with their described-box quantities, computed once), least squares on the log error of tokens/s (and of the
ratio where a table gives only that); the box terms (the upload and RAM read shares, whose figures no post
gives) per table; `--write` stores the result in `harness/perf/prior_fit.json`."""

from __future__ import annotations

import datetime
import json
import math
import statistics
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from harness.perf.described import price
from harness.perf.priors import FIT_FILE, GUESS, Efficiencies

# fitted: (name, lower, upper); a share of a peak at most 1 (GPU memory: 0.9, about the best a copy benchmark
# reaches), the prompt's arithmetic up to 4 (quantized products run on the int8 tensor cores)
FITTED = (("cpu_read", 0.05, 1.0), ("gpu_read", 0.05, 0.9), ("bus", 0.05, 1.0), ("gpu_flops", 0.01, 4.0),
          ("cpu_gflops_per_core", 1.0, 400.0), ("crossing_s", 1e-6, 1e-3), ("upload_s", 1e-6, 1e-2),
          ("routing_draws", 0.01, 1.0), ("routing_focus", 0.02, 1.0), ("routing_skew", 0.01, 2.0),
          ("pageable", 0.2, 1.0))
PULL = 0.1          # weak pull of each log efficiency to the guess where the tables say nothing
BOX_TERMS = ("bus", "cpu_read")   # a box's own: its upload rate (pinned or not, the host's copy) and RAM speed
BOX_PULL = 0.3      # pull of a table's box terms to their common value
TYPE_PULL = 0.3     # pull of a type's arithmetic share to the shared one


def predicted(table: Table, eff: Efficiencies) -> list[float]:
    return [price(r.quantities, table.model, table.profile, eff).tps for r in table.rows]


def first_row(table: Table, kind: str) -> int:
    return next(i for i, r in enumerate(table.rows) if r.kind == kind)


def published_ratio(table: Table, i: int) -> float | None:
    row, first = table.rows[i], table.rows[first_row(table, table.rows[i].kind)]
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
    uploads' share grows with it; at one size it trades with the bus share); pageable only where a table has
    both pinned and pageable rows (else it trades with the table's own upload share, a box term)."""
    varies = any(len({r.test.ubatch for r in t.rows}) > 1 for t in tables)
    both = any(len({r.quantities.pinned for r in t.rows if r.kind == "pp"}) > 1 for t in tables)
    return [n for n, _, _ in FITTED if (n != "routing_draws" or varies) and (n != "pageable" or both)]


def _efficiencies(x: np.ndarray, types: list[str], names: list[str]) -> Efficiencies:
    values = {n: float(v) for n, v in zip(names, np.exp(x[:len(names)]))}
    return GUESS.with_values(**values, gpu_flops_by_type={t: float(v) for t, v in zip(types, np.exp(x[len(names):]))})


def residuals(tables: list[Table], eff: Efficiencies, boxes: dict[str, dict] | None = None) -> list[dict]:
    """Per row the log error of tokens/s where the table gives it, of the ratio to the first row where it
    gives only that; `boxes`: each table's own box terms over `eff`'s."""
    out = []
    for table in tables:
        values = predicted(table, eff.with_values(**(boxes or {}).get(table.name, {})))
        for i, (row, value) in enumerate(zip(table.rows, values)):
            if row.tps:
                out.append({"table": table.name, "row": row.label, "test": f"{row.kind}{row.test.tokens}",
                            "published_tps": round(row.tps, 2), "predicted_tps": round(value, 2),
                            "log_error": math.log(value / row.tps)})
            elif row.ratio is not None:
                ratio = value / values[first_row(table, row.kind)]
                out.append({"table": table.name, "row": row.label, "test": f"{row.kind}{row.test.tokens}",
                            "published_ratio": row.ratio, "predicted_ratio": round(ratio, 4),
                            "log_error": math.log(ratio / row.ratio)})
    return out


def fit_boxes(tables: list[Table]) -> tuple[Efficiencies, dict[str, dict]]:
    """Efficiencies minimizing the squared log error of `tables`' rows, with the box terms (`BOX_TERMS`: the
    upload and RAM read shares, which no post gives the figures for) fitted per table and pulled to their
    common value; the shared efficiencies start at the guess and are pulled weakly to it, a type's arithmetic
    share to the shared one. Returns the efficiencies a new box gets (the box terms' geometric mean over the
    tables) and each table's own box terms."""
    types, names = fit_types(tables), [n for n in identified(tables) if n not in BOX_TERMS]
    bounds = {n: (lo, hi) for n, lo, hi in FITTED}
    box_guess = [math.log(getattr(GUESS, b)) for b in BOX_TERMS] * len(tables)
    guess = np.log([getattr(GUESS, n) for n in names] + [GUESS.gpu_flops] * len(types)).tolist() + box_guess
    lower = np.log([bounds[n][0] for n in names] + [0.01] * len(types)
                   + [bounds[b][0] for b in BOX_TERMS] * len(tables))
    upper = np.log([bounds[n][1] for n in names] + [4.0] * len(types)
                   + [bounds[b][1] for b in BOX_TERMS] * len(tables))
    guess = np.array(guess)
    start = np.clip(guess, lower + 1e-9, upper - 1e-9)
    shared, n, m = names.index("gpu_flops"), len(names), len(names) + len(types)

    def split(x: np.ndarray) -> tuple[Efficiencies, dict[str, dict], np.ndarray]:
        box = x[m:].reshape(len(tables), len(BOX_TERMS))
        centre = box.mean(axis=0)
        eff = _efficiencies(np.concatenate([x[:m]]), types, names).with_values(
            **{b: float(np.exp(c)) for b, c in zip(BOX_TERMS, centre)})
        boxes = {t.name: {b: float(np.exp(v)) for b, v in zip(BOX_TERMS, row)} for t, row in zip(tables, box)}
        return eff, boxes, box - centre

    def objective(x: np.ndarray) -> np.ndarray:
        eff, boxes, spread = split(x)
        errors = [r["log_error"] for r in residuals(tables, eff, boxes)]
        return np.array(errors + list(PULL * (x[:n] - guess[:n])) + list(TYPE_PULL * (x[n:m] - x[shared]))
                        + list(BOX_PULL * spread.ravel())
                        + list(PULL * (spread.mean(axis=0) + np.mean(x[m:].reshape(len(tables), -1), axis=0)
                                       - guess[m:m + len(BOX_TERMS)])))

    eff, boxes, _ = split(least_squares(objective, start, bounds=(lower, upper)).x)
    return eff, boxes


def fit(tables: list[Table]) -> Efficiencies:
    """The efficiencies a box none of `tables` is gets (`fit_boxes`)."""
    return fit_boxes(tables)[0]


def needed(table: Table, eff: Efficiencies, name: str, kind: str) -> float:
    """The value of one efficiency that alone makes `table`'s `kind` rows right on the median (the others at
    `eff`), without its physical bound: what the table asks of that term."""
    def median_log_error(x: np.ndarray) -> np.ndarray:
        values = predicted(table, eff.with_values(**{name: float(np.exp(x[0]))}))
        errors = [math.log(v / r.tps) for r, v in zip(table.rows, values) if r.kind == kind and r.tps]
        return np.array([statistics.median(errors)]) if errors else np.zeros(1)
    return float(np.exp(least_squares(median_log_error, [math.log(getattr(eff, name))]).x[0]))


def _percent(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["error_pct"] = round(100 * (math.exp(r.pop("log_error")) - 1), 1)
    return rows


def write_fit(tables: list[Table], path: Path = FIT_FILE) -> Efficiencies:
    """The efficiencies fitted on every table, with the tables, the date, each table's own box terms and the
    residuals (with the efficiencies a new box gets, and with each table's own box terms): what
    `harness.perf.priors` ships as `PRIOR`."""
    eff, boxes = fit_boxes(tables)
    record = {"fitted_on": [f"{t.name} ({t.model.name}, {t.profile.gpu.name})" + (
                  f"; assumed {', '.join(t.assumptions)}" if t.assumptions else "") for t in tables],
              "date": datetime.date.today().isoformat(), "by": "benchmarks/published.py --write",
              "types_fitted": fit_types(tables), "box_terms": list(BOX_TERMS),
              "efficiencies": eff.to_dict(),
              "box_terms_per_table": {k: {b: round(v, 4) for b, v in box.items()} for k, box in boxes.items()},
              "residuals": _percent(residuals(tables, eff)),
              "residuals_with_own_box_terms": _percent(residuals(tables, eff, boxes))}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return eff
