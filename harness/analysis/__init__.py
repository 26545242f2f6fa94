"""Analysis of results folders: load (`load`), statistics (`stats`), plots (`plots`) and reports (`report`).

Typical use::

    from harness.analysis import load_results, summarize, best_strategies
    df = load_results("results/default")
    table = summarize(df)
    best = best_strategies(table)
"""

from harness.analysis.load import SUPPORTED_SCHEMA_VERSIONS, load_results, load_telemetry, parse_test
from harness.analysis.stats import best_strategies, confidence_interval, summarize

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS", "best_strategies", "confidence_interval", "load_results", "load_telemetry",
    "parse_test", "summarize",
]
