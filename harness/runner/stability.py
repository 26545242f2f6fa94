"""Stability checks: what makes a measurement doubtful, said on its row (`warnings`), in the run's summary and
in the report. Modelled on pyperf's checks: a figure is kept and flagged, never silently dropped.

- `cv X% >= 10%`: the samples behind the row's interval spread too much (across processes once there are two,
  else across the repetitions);
- `samples X ms < 100 ms`: one measured repetition is too short to time reliably;
- `oversubscribed`: more engine threads than CPUs in its set (see `harness.cpus`);
- `outlier`: a sample far from the others (modified z-score above 3.5, and more than 10% off the median);
- `swap activity`: the host swapped pages in or out during the measurement;
- `other processes used X% of the CPU`: more than a fifth of the machine busy with something else;
- `GPU throttled`: NVML clock event reasons (power cap, thermal) during the measurement.

Not a row's warning (issue 20): a phase's telemetry from fewer than 10 samples. A 250 ms test at the sampler's
10 Hz gets 2 or 3 samples, and sampling it densely enough (40 Hz and more: the process tree from /proc, the host,
NVML per GPU on every tick) would put the sampler's own CPU time into the measurement, the very noise "other
processes" warns about; nothing a person can do about the row either. The row's `telemetry_samples` says it,
and the analysis reports it once per sweep (`harness.analysis.stability.telemetry_note`).

Each is a `harness.warnings.RowWarning` of its kind (the sentences above are their messages), with a remedy.
"""

from __future__ import annotations

import math
import statistics

from harness.intervals import Interval
from harness.warnings import (
    CV, GPU_THROTTLED, OTHER_PROCESSES, OUTLIER_PROCESS, OUTLIER_REPETITION, OVERSUBSCRIBED,
    SHORT_SAMPLES, SWAP, RowWarning, warning,
)

CV_LIMIT_PCT = 10.0
MIN_SAMPLE_MS = 100.0
OTHER_CPU_LIMIT = 0.2


def outliers(samples: list[float]) -> list[float]:
    """Samples whose modified z-score (Iglewicz & Hoaglin: 0.6745 |x - median| / MAD) exceeds 3.5 and that lie
    more than 10% from the median; none with fewer than three samples."""
    if len(samples) < 3:
        return []
    median = statistics.median(samples)
    mad = statistics.median(abs(x - median) for x in samples)
    found = []
    for x in samples:
        far = abs(x - median) > 0.1 * abs(median)
        if far and (mad == 0 or 0.6745 * abs(x - median) / mad > 3.5):
            found.append(x)
    return found


def row_warnings(*, repetitions: list[float], sample_ms: float | None, ci: Interval, process_means: list[float],
                 oversubscribed: str | None, telemetry: dict, n_cpus: int) -> list[RowWarning]:
    """The warnings of one row (one test of one process), given its repetitions, the interval over all the
    configuration's processes so far, the phase's telemetry columns and the host's CPU count (`other_cpu_pct_mean`
    is host-wide: 100 = one core)."""
    out = []
    if not math.isnan(ci.cv_pct) and ci.cv_pct >= CV_LIMIT_PCT:
        out.append(warning(CV, f"cv {ci.cv_pct:.0f}% >= {CV_LIMIT_PCT:.0f}% across {ci.n} {ci.unit}"))
    if sample_ms is not None and sample_ms < MIN_SAMPLE_MS:
        out.append(warning(SHORT_SAMPLES, f"samples {sample_ms:.0f} ms < {MIN_SAMPLE_MS:.0f} ms"))
    if oversubscribed:
        out.append(warning(OVERSUBSCRIBED, oversubscribed))
    for what, kind, values in (("repetition", OUTLIER_REPETITION, repetitions),
                               ("process", OUTLIER_PROCESS, process_means)):
        odd = outliers(values)
        if odd:
            shown = ", ".join(f"{x:.1f}" for x in odd)
            out.append(warning(kind, f"outlier {what} {shown} t/s (median {statistics.median(values):.1f})"))
    swap = telemetry.get("swap_io_pages_s_peak")
    if swap:
        out.append(warning(SWAP, f"swap activity: {swap:.0f} pages/s"))
    other = telemetry.get("other_cpu_pct_mean")
    if other is not None and n_cpus and other / (100 * n_cpus) > OTHER_CPU_LIMIT:
        out.append(warning(OTHER_PROCESSES, f"other processes used {other / n_cpus:.0f}% of the CPU"))
    throttle = telemetry.get("gpu_throttle_reasons")
    if throttle:
        out.append(warning(GPU_THROTTLED, f"GPU throttled: {throttle}"))
    return out
