"""A two-axis view: one parametric strategy's parameter (rows) × one engine knob (columns), the mean tokens/s in
each cell (annotated), the best cell outlined; pp and tg panels at the headline tests.

Unless named, the strategy and the scope (model, engine, tool) are those of the fastest tg configuration among
the parametric strategies with two or more values of the parameter and of the knob; the other knobs that vary
are held at the values of each panel's fastest configuration of that strategy (a slice of the sweep, named in
the panel's title)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from harness.analysis.knobs import KNOB_LABELS, KNOBS, axis_label, knob_sort_key, varying_knobs
from harness.analysis.load import param_name
from harness.analysis.plots.common import SCOPE, scope_title
from harness.analysis.stats import headline_test


def heatmap_grid(rows: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Mean tokens/s, parameter values (index, ascending) × knob values (columns, `knob_sort_key` order)."""
    grid = rows.pivot_table(index="param_value", columns=knob, values="tps_mean", aggfunc="max")
    return grid.reindex(columns=sorted(grid.columns, key=knob_sort_key)).sort_index()


def _subject(table: pd.DataFrame, knob: str, strategy: str | None) -> pd.DataFrame:
    """The rows of the chosen strategy and scope (see the module docstring)."""
    params = table[table["param_value"].notna()]
    if strategy:
        params = params[params["strategy"] == strategy]
    by = params.groupby([*SCOPE, "strategy"], dropna=False)
    params = params[(by[knob].transform("nunique") > 1) & (by["param_value"].transform("nunique") > 1)]
    if params.empty:
        return params
    test = headline_test(params, "tg") or headline_test(params, "pp")
    lead = params[params["test"] == test].sort_values("tps_mean", ascending=False).iloc[0]
    same = np.logical_and.reduce([params[c] == lead[c] for c in [*SCOPE, "strategy"]])
    return params[same]


def plot_heatmap(table: pd.DataFrame, knob: str, strategy: str | None = None):
    """The heatmap (see the module docstring); None when no parametric strategy has two values of `knob`."""
    if knob not in KNOBS:
        raise ValueError(f"{knob!r} is not a knob ({', '.join(KNOBS)})")
    if knob not in table or "param_value" not in table:
        return None
    rows = _subject(table, knob, strategy)
    if rows.empty:
        return None
    others = [k for k in varying_knobs(rows) if k != knob]
    first = rows.iloc[0]
    panels = [(kind, test) for kind in ("pp", "tg") if (test := headline_test(rows, kind))]
    grids = []
    for kind, test in panels:
        part = rows[rows["test"] == test]
        lead = part.sort_values("tps_mean", ascending=False).iloc[0]
        for k in others:
            part = part[part[k] == lead[k]]
        fixed = " ".join(f"{KNOB_LABELS[k]}={axis_label(lead[k])}" for k in others)
        grids.append((kind, test, heatmap_grid(part, knob), fixed))
    n_rows = max(len(g.index) for _, _, g, _ in grids)
    n_cols = max(len(g.columns) for _, _, g, _ in grids)
    fig, axes = plt.subplots(1, len(grids), figsize=(max(5.5, 1.0 * n_cols + 2.5) * len(grids),
                                                      max(3.5, 0.32 * n_rows + 1.8)), squeeze=False)
    name = param_name(first["strategy_params"]) or "parameter"
    for ax, (kind, test, grid, fixed) in zip(axes[0], grids):
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax, label=f"{test} tokens/s")
        size = 8 if values.size <= 80 else 6
        top = np.nanmax(values)
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.0f}" if top >= 100 else f"{value:.1f}", ha="center", va="center",
                        fontsize=size, color="white" if value < np.nanmean(values) else "black")
        i, j = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
        ax.set_xticks(range(len(grid.columns)), [axis_label(c) for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{v:g}" for v in grid.index], fontsize=7)
        ax.set_xlabel(f"{knob} ({KNOB_LABELS[knob]})")
        ax.set_ylabel(f"{first['strategy']}: {name}")
        best = f"best: {name}={grid.index[i]:g}, {KNOB_LABELS[knob]}={axis_label(grid.columns[j])}"
        ax.set_title(f"{test} ({kind}), {best}" + (f"\nother knobs at {fixed}" if fixed else ""), fontsize=9)
    fig.suptitle(f"{first['strategy']} × {knob} — {scope_title(first['model'], first['engine'], first['tool'])}; "
                 "red: the best cell", fontsize=10)
    fig.tight_layout()
    return fig
