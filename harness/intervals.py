"""Confidence intervals, and the one rule for "beyond noise", shared by the runner (each row's interval, adaptive
stopping) and the analysis (tables, best placement, verdicts).

The process is the unit of replication (pyperf's lesson): repetitions inside one process do not see what
changes from one process to the next (where the memory lands, the clocks, what else runs), so with two or more
processes the samples are the processes' means; with only one process they are its repetitions (its mean
alone when it has none), and the interval is then too narrow and says so (`unit`). That rule is
`replication_samples`, the one place it is written: the runner's rows, the report's tables (`harness.analysis.
stats`), `moebench tune` and `moebench explain` all take their samples from it.

- `confidence_interval(samples)`: the mean with its 95% interval on the log scale (issue 20: tokens/s are
  positive, and a symmetric t interval of two or three noisy processes reached below zero): the delta method,
  var(log m) ≈ s² / (n·m²), so the interval is m·exp(± t(0.975, n − 1)·s / (√n·m)): asymmetric around the
  mean, never below 0, and the symmetric t interval to first order when it is narrow. `log_half_width` is that
  log half-width, the one formula (the analysis computes it for many groups at once).
- `noise_verdict(a_low, a_high, b_low, b_high)`: the one definition of "beyond noise": two configurations
  differ when their 95% intervals do not overlap ("a": a's lies wholly above b's, "b" the reverse, "tie": they
  overlap or touch, "untested": a bound is missing, e.g. a single sample).
- `ratio_interval(...)`: the ratio of two means, later / earlier, with its 95% interval: the delta method on
  the log ratio, var(log m) ≈ s² / (n·m²) for each mean, the two added, and Student's t with the
  Welch–Satterthwaite degrees of freedom, df = (v₁ + v₂)² / (v₁² / (n₁ − 1) + v₂² / (n₂ − 1)); the interval
  is exp(log ratio ± t(0.975, df)·√(v₁ + v₂)), so it is asymmetric around the ratio and never below 0.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy.special import stdtrit  # scipy.stats.t.ppf's own routine, without importing scipy.stats (~1 s)

LEVEL = 0.95


def _missing(value) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _clean(samples) -> list[float]:
    return [float(v) for v in (samples if samples is not None else ()) if not _missing(v)]


def t_critical(df: float) -> float:
    """Two-sided 95% critical value of Student's t with `df` degrees of freedom, fractional too (NaN below 1
    or missing)."""
    if _missing(df) or float(df) < 1:
        return math.nan
    return float(t_quantiles(float(df)))


def t_quantiles(df):
    """The two-sided 95% critical values of Student's t for degrees of freedom `df` (a number or a numpy
    array, each at least 1)."""
    return stdtrit(df, 0.5 + LEVEL / 2)


def log_half_width(t, sd, n, mean):
    """The 95% interval's half-width on the log scale, t·s / (√n·m) (the delta method); numbers or numpy
    arrays alike. The interval is mean·exp(∓ this)."""
    return t * sd / (n ** 0.5 * mean)


def confidence_interval(samples) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) at 95% on the log scale (see the module docstring); the bounds are NaN for fewer
    than two samples or a mean that is not positive."""
    values = _clean(samples)
    if not values:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2 or mean <= 0:
        return mean, math.nan, math.nan
    half = log_half_width(t_critical(len(values) - 1), statistics.stdev(values), len(values), mean)
    return mean, mean * math.exp(-half), mean * math.exp(half)


def stdev(samples) -> float:
    """The sample standard deviation (n − 1); NaN for fewer than two samples."""
    values = _clean(samples)
    return statistics.stdev(values) if len(values) >= 2 else math.nan


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    unit: str            # "processes" or "repetitions"
    cv_pct: float        # the samples' coefficient of variation, % (NaN for one sample)

    @property
    def half_width_pct(self) -> float:
        """Half the interval's width as a percentage of its mean (NaN without an interval)."""
        if math.isnan(self.low) or not self.mean:
            return math.nan
        return (self.high - self.low) / 2 / abs(self.mean) * 100


def replication_samples(process_means, repetitions=None) -> tuple[str, list[float]]:
    """(unit, samples) of one configuration and test's interval: with two or more processes, "processes" and
    their means (missing ones left out); else "repetitions" and the single process's repetitions, or its mean
    alone when it has none."""
    means = list(process_means if process_means is not None else ())
    if len(means) >= 2:
        return "processes", _clean(means)
    values = _clean(repetitions)
    if not values:
        values = _clean(means)
    return "repetitions", values


def interval(process_means: list[float], repetitions: list[float] | None = None) -> Interval:
    """The interval of one configuration and test over `replication_samples` (the process means, or with one
    process its repetitions)."""
    unit, samples = replication_samples(process_means, repetitions)
    mean, low, high = confidence_interval(samples)
    return Interval(mean, low, high, len(samples), unit, cv_pct(samples))


def cv_pct(samples) -> float:
    """stdev / mean × 100 of the samples; NaN for fewer than two samples or a zero mean."""
    values = _clean(samples)
    if len(values) < 2 or not statistics.fmean(values):
        return math.nan
    return statistics.stdev(values) / abs(statistics.fmean(values)) * 100


def noise_verdict(a_low, a_high, b_low, b_high) -> str:
    """"a" when a's 95% interval lies wholly above b's, "b" the other way round, "tie" when they overlap (or
    touch), "untested" when either interval is missing."""
    if any(_missing(v) for v in (a_low, a_high, b_low, b_high)):
        return "untested"
    if float(a_low) > float(b_high):
        return "a"
    if float(b_low) > float(a_high):
        return "b"
    return "tie"


def ratio_interval(mean_a, sd_a, n_a, mean_b, sd_b, n_b) -> tuple[float, float, float, float]:
    """(ratio mean_b / mean_a, ci_low, ci_high, df) at 95% (see the module docstring). The bounds are NaN when
    either side has fewer than two samples or a mean that is not positive; without any spread the interval
    is the ratio itself (df infinite)."""
    if _missing(mean_a) or _missing(mean_b) or float(mean_a) == 0:
        return math.nan, math.nan, math.nan, math.nan
    ratio = float(mean_b) / float(mean_a)
    if float(mean_a) <= 0 or float(mean_b) <= 0 or _missing(n_a) or _missing(n_b) or n_a < 2 or n_b < 2 \
            or _missing(sd_a) or _missing(sd_b):
        return ratio, math.nan, math.nan, math.nan
    v_a = float(sd_a) ** 2 / (n_a * float(mean_a) ** 2)
    v_b = float(sd_b) ** 2 / (n_b * float(mean_b) ** 2)
    if v_a + v_b == 0:
        return ratio, ratio, ratio, math.inf
    df = (v_a + v_b) ** 2 / (v_a ** 2 / (n_a - 1) + v_b ** 2 / (n_b - 1))
    half = t_critical(df) * math.sqrt(v_a + v_b)
    return ratio, ratio * math.exp(-half), ratio * math.exp(half), df
