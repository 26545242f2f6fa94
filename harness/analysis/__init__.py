"""Analysis of results folders: load (`load`), intervals and the noise verdict (`harness.intervals`), per-configuration
statistics (`stats`), engine knobs as part of a configuration's identity (`knobs`), rankings and pairwise verdicts
(`verdicts`), folder against folder (`compare`), what a big sweep's report shows (`selection`), plots (`plots`)
and reports (`report`, `stability`, `community`).

Typical use::

    from harness.analysis import load_results, summarize, best_strategies, pairwise_verdicts
    df = load_results("results/default")
    table = summarize(df)
    best = best_strategies(table)
    pairs = pairwise_verdicts(table)
"""

from harness.analysis.compare import compare, regressions
from harness.intervals import confidence_interval, noise_verdict, ratio_interval, t_critical
from harness.analysis.knobs import KNOBS, varying_knobs
from harness.analysis.load import (SUPPORTED_SCHEMA_VERSIONS, config_key, load_devices, load_results, load_telemetry,
                                   parse_test)
from harness.analysis.selection import top_configurations
from harness.analysis.stats import summarize
from harness.analysis.verdicts import best_strategies, pairwise_verdicts

__all__ = [
    "KNOBS", "SUPPORTED_SCHEMA_VERSIONS", "best_strategies", "compare", "confidence_interval", "config_key",
    "load_devices", "load_results", "load_telemetry", "noise_verdict", "pairwise_verdicts", "parse_test", "ratio_interval",
    "regressions", "summarize", "t_critical", "top_configurations", "varying_knobs",
]
