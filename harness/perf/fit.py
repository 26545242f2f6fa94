"""Fitting the performance model's constants (`harness.perf.model`) to measured tokens/s: per kind, non-negative
least squares on the relative error of the time. Its own module because scipy.optimize takes most of a second to
import and only calibration and tuning fit; predicting needs only the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from harness.perf.model import TERMS, Constants, features, predict
from harness.perf.workload import Workload


@dataclass
class Fit:
    constants: Constants
    residuals: list[dict]          # per sample: label, kind, measured and predicted tokens/s, error_pct

    @property
    def median_abs_error_pct(self) -> dict[str, float]:
        out = {}
        for kind in ("pp", "tg"):
            errors = [abs(r["error_pct"]) for r in self.residuals if r["kind"] == kind]
            if errors:
                out[kind] = float(np.median(errors))
        return out


def fit_constants(samples: list[tuple[str, Workload, float]], bus_s_per_byte: float) -> Fit:
    """Constants from measured samples (label, workload, measured tokens/s): per kind, non-negative least
    squares on the relative error of the time, after the bus term (fixed at `bus_s_per_byte`)."""
    fitted: dict[str, dict[str, float]] = {}
    for kind, names in TERMS.items():
        rows = [(w, tps) for _, w, tps in samples if w.test.kind == kind and tps > 0]
        if not rows:
            fitted[kind] = {name: 0.0 for name in names}
            continue
        a = np.array([[features(w)[n] for n in names] for w, _ in rows], dtype=float)
        seconds = np.array([w.test.tokens / tps for w, tps in rows])
        bus = np.array([w.bus_bytes * bus_s_per_byte for w, _ in rows])
        scale = np.where(a.max(axis=0) > 0, a.max(axis=0), 1.0)   # columns of comparable size
        weights = 1.0 / seconds
        solution, _ = nnls((a / scale) * weights[:, None], (seconds - bus) * weights)
        fitted[kind] = {n: float(v) for n, v in zip(names, solution / scale)}
    constants = Constants(fitted["tg"], fitted["pp"], bus_s_per_byte)
    residuals = []
    for label, w, tps in samples:
        predicted = predict(w, constants).tps
        residuals.append({"label": label, "kind": w.test.kind, "measured_tps": round(tps, 3),
                          "predicted_tps": round(predicted, 3), "error_pct": round(100 * (predicted / tps - 1), 2)})
    return Fit(constants, residuals)
