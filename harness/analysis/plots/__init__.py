"""Plots of a results frame (matplotlib, Agg backend), one module per concern. Each `plot_*` returns a Figure
(or None when there is nothing to draw); `save_all` writes the report's plots as PNG and SVG into a folder and
returns the PNG paths. Every chart stays readable at any sweep size (`harness.analysis.selection`).

- `plot_throughput` (`throughput`): grouped bars, pp and tg tokens/s with 95% CI error bars, per (model, engine,
  tool) panel the top 30 configurations and the baselines; file `throughput`.
- `plot_sweep` (`sweeps`): tokens/s against the strategy's parameter (`x="param"`, file `param_sweep`) or an
  engine knob (`x="ubatch"`, ..., file `knob_<knob>`), one line per combination of the rest.
- `plot_heatmap` (`heatmap`): strategy parameter × knob, annotated cells, the best outlined, pp and tg panels;
  file `heatmap_<knob>`.
- `plot_vram_pareto`, `plot_traffic` (`resources`): VRAM and bus traffic against speed; files `vram_pareto`,
  `traffic`.
- `plot_placement_map` (`placement`): layers × tensor groups by device for the best configurations and the
  baselines; file `placement_map`.
- `plot_telemetry` (`telemetry`): one configuration's time series; file `telemetry` (the fastest tg
  configuration) and `telemetry_<baseline>` (the fastest of each baseline strategy present).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.plots.common import figure_png, save_figure
from harness.analysis.plots.heatmap import heatmap_grid, plot_heatmap
from harness.analysis.plots.placement import GROUP_ORDER, placement_grid, plot_placement_map
from harness.analysis.plots.resources import pareto_front, plot_traffic, plot_vram_pareto
from harness.analysis.plots.sweeps import plot_param_sweep, plot_sweep, sweep_axes
from harness.analysis.plots.telemetry import TELEMETRY_UNITS, pick_telemetry_row, plot_telemetry
from harness.analysis.plots.throughput import plot_throughput
from harness.analysis.load import load_phase_windows, load_telemetry
from harness.analysis.selection import highlights
from harness.analysis.verdicts import best_strategies

__all__ = ["GROUP_ORDER", "TELEMETRY_UNITS", "figure_png", "heatmap_grid", "pareto_front", "pick_telemetry_row",
           "placement_grid", "plot_heatmap", "plot_param_sweep", "plot_placement_map", "plot_sweep",
           "plot_telemetry", "plot_throughput", "plot_traffic", "plot_vram_pareto", "save_all", "save_figure",
           "sweep_axes"]


def _figures(df: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame | None):
    """(file name, figure builder) of every report plot, in the report's order; built one at a time so that
    each figure is written and closed before the next is drawn."""

    yield "throughput", lambda: plot_throughput(table)
    for axis in sweep_axes(table):
        yield ("param_sweep" if axis == "param" else f"knob_{axis}"), lambda axis=axis: plot_sweep(table, axis)
        if axis != "param":
            yield f"heatmap_{axis}", lambda axis=axis: plot_heatmap(table, axis)
    yield "vram_pareto", lambda: plot_vram_pareto(table)
    yield "traffic", lambda: plot_traffic(table)
    shown = highlights(table, best) if len(table) else table.assign(why="")
    names = dict(zip(shown["config_key"], shown["why"]))
    yield "placement_map", lambda: plot_placement_map(df, configs=list(names) or None, names=names)
    best_tg = [k for k, why in names.items() if why == "best for tg"]
    baselines = shown[shown["why"].str.startswith("baseline")]
    picks = [("telemetry", best_tg or None), ("telemetry", None)]  # the best tg configuration, else the fastest row
    picks += [(f"telemetry_{row['strategy']}", [row["config_key"]]) for _, row in baselines.iterrows()]
    done = set()
    for name, configs in picks:
        row = pick_telemetry_row(df, configs)
        if row is None or name in done or row["config_id"] in done:
            continue
        done.update({name, row["config_id"]})
        title = f"Telemetry of {row['config_key']} ({row['tool']}, config {row['config_id']})"
        yield name, lambda row=row, title=title: plot_telemetry(
            load_telemetry(row["sweep_dir"], row["telemetry_file"]), title,
            load_phase_windows(row["sweep_dir"], row["telemetry_file"]))


def save_all(df: pd.DataFrame, table: pd.DataFrame, folder: str | Path,
             best: pd.DataFrame | None = None) -> list[Path]:
    """Write every plot that has data into `folder` as PNG and SVG; the PNG paths, in order. `best`
    (`best_strategies`) picks the placement maps' configurations with the baselines."""

    folder = Path(folder)
    if best is None and len(table):
        best = best_strategies(table)
    out = []
    for name, build in _figures(df, table, best):
        fig = build()
        if fig is not None:
            out.append(save_figure(fig, folder, name))
    return out
