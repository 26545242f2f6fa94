"""Grouped bars of pp and tg tokens/s per configuration with 95% CI error bars, one panel per (sweep, model,
engine, tool); a panel shows at most the `selection.chart_configurations` of its scope (the top `n` by the
balanced score, the best for pp and for tg, and the best of each baseline strategy), so a sweep of a thousand
configurations still gives a readable chart."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.analysis.plots.common import SCOPE, ci_errors, scope_title
from harness.analysis.selection import CHART_N, chart_configurations
from harness.analysis.stats import headline_test


def plot_throughput(table: pd.DataFrame, n: int = CHART_N):
    """The bar chart (see the module docstring); None without data."""
    groups = list(table.groupby(SCOPE, sort=True))
    if not groups:
        return None
    many = table["sweep_label"].nunique() > 1
    shown = [(scope, group, chart_configurations(group, n)) for scope, group in groups]
    widest = max(len(configs) for _, _, configs in shown)
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(11, 0.32 * widest + 3), 4.6 * len(groups)), squeeze=False)
    for ax, ((sweep, model, engine, tool), group, configs) in zip(axes[:, 0], shown):
        tests = [t for t in (headline_test(group, "pp"), headline_test(group, "tg")) if t]
        x = np.arange(len(configs))
        width = 0.8 / max(len(tests), 1)
        for i, test in enumerate(tests):
            rows = group[group["test"] == test].drop_duplicates("config_key").set_index("config_key").reindex(configs)
            ax.bar(x + (i - (len(tests) - 1) / 2) * width, rows["tps_mean"].fillna(0), width, yerr=ci_errors(rows),
                   capsize=2, label=test)
        ax.set_xticks(x, configs, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("throughput (tokens/s)")
        total = group["config_key"].nunique()
        subset = f"; {len(configs)} of {total} configurations: top {n} and baselines" if len(configs) < total else ""
        ax.set_title(f"Throughput per configuration, mean with 95% CI — "
                     f"{scope_title(model, engine, tool, sweep if many else None)}{subset}", fontsize=9)
        ax.legend(title="test")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
