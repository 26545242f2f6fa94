"""Placement maps: per configuration, layers × tensor groups coloured by device, rebuilt offline from the
strategy and the model file. Knobs do not move weights, so configurations that differ only in knobs share a
map; a sweep's map shows at most `MAX_MAPS` placements (those named, else the fastest)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.analysis.load import config_key
from harness.models import classify_tensor, inspect_model, layer_index
from strategies import get_strategy

GROUP_ORDER = ("embeddings", "attention", "norms", "router", "shared_experts", "dense_ffn", "routed_experts",
               "output", "other")
PLACEMENT = ["strategy", "strategy_params", "placement"]
MAX_MAPS = 12
# one colour per device: the CPU, accel0, accel1, ... (accelerators beyond the palette share its last colour),
# and a cell whose tensors sit on different devices
DEVICE_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
MIXED_COLOUR = "#c9a0dc"
MIXED = len(DEVICE_COLOURS)
_COLOUR_NAMES = ["blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "violet"]


def device_code(device: str) -> int:
    """0 for the CPU, 1 + i for accel<i> (the palette's last colour for any beyond it)."""
    return 0 if device == "cpu" else min(1 + int(device.removeprefix("accel") or 0), len(DEVICE_COLOURS) - 1)


def _device_label(code: int) -> str:
    return "CPU (RAM)" if code == 0 else "mixed" if code == MIXED else f"accel{code - 1} (VRAM)"


def placement_grid(model, strategy: str, params: dict | None) -> tuple[list[str], list[str], np.ndarray] | None:
    """(row labels, group labels, matrix) for one strategy: 0 CPU, 1 + i accelerator i, `MIXED` several devices,
    NaN none.
    Rows are `global` (tensors outside blocks) and each layer. None when the strategy cannot be rebuilt
    offline (an unknown plugin, a strategy that needs the engine)."""

    try:
        placement = get_strategy(strategy).placement(model, params or {})
    except Exception:  # noqa: BLE001 - a plugin that is not installed here, or needs a live engine
        return None
    n_layers = 1 + max((layer_index(n) or 0) for n in placement.tensor_devices)
    cells: dict[tuple[int, str], list[int]] = {}
    for name, device in placement.tensor_devices.items():
        layer = layer_index(name)
        row = 0 if layer is None else layer + 1
        cells.setdefault((row, classify_tensor(name).value), []).append(device_code(device))
    groups = [g for g in GROUP_ORDER if any(k[1] == g for k in cells)]
    grid = np.full((n_layers + 1, len(groups)), np.nan)
    for (row, group), devices in cells.items():
        grid[row, groups.index(group)] = devices[0] if len(set(devices)) == 1 else MIXED
    return ["global"] + [f"blk.{i}" for i in range(n_layers)], groups, grid


def _chosen(df: pd.DataFrame, configs, limit: int) -> pd.DataFrame:
    """One row per distinct placement: of the `configs` (config_keys) when given, else the fastest `limit`."""
    rows = df[df["ok"]] if "ok" in df else df
    if configs is not None:
        order = {key: i for i, key in enumerate(configs)}
        rows = rows[rows["config_key"].isin(order)]
        rows = rows.assign(_order=rows["config_key"].map(order)).sort_values("_order")
        return rows.drop_duplicates(PLACEMENT).head(limit)
    rows = rows.sort_values("tps_mean", ascending=False) if "tps_mean" in rows else rows
    return rows.drop_duplicates(PLACEMENT).head(limit).sort_values("config_key")


def _title(row, names) -> str:
    """The placement's name (without knobs: they do not move weights), and why it is shown."""

    why = (names or {}).get(row["config_key"])
    return config_key(row["strategy"], row["strategy_params"], row["placement"]) + (f"\n({why})" if why else "")


def plot_placement_map(df: pd.DataFrame, model_file: str | None = None, configs=None, names: dict | None = None,
                       limit: int = MAX_MAPS):
    """One panel per placement: layers × tensor groups, each device in its own colour (blue CPU, orange accel0,
    green accel1, ...). `configs`: the
    config_keys to draw (default: the fastest); `names`: config_key -> why it is shown (e.g. "best for tg")."""
    from matplotlib.colors import ListedColormap


    if model_file is None:
        files = df["model_file"].dropna().unique() if "model_file" in df else []
        model_file = next((f for f in files if f and Path(f).exists()), None)
    if not model_file or not Path(model_file).exists():
        return None
    model = inspect_model(model_file)
    grids = []
    for _, row in _chosen(df, configs, limit).iterrows():
        params = json.loads(row["strategy_params"]) if str(row["strategy_params"]).startswith("{") else {}
        grid = placement_grid(model, row["strategy"], params)
        if grid is not None:
            grids.append((_title(row, names), grid))
    if not grids:
        return None
    cols = min(4, len(grids))
    rows_n = math.ceil(len(grids) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 3.6 * rows_n), squeeze=False)
    cmap = ListedColormap([*DEVICE_COLOURS, MIXED_COLOUR])
    used = set()
    for ax, (name, (ylabels, groups, grid)) in zip(axes.flat, grids):
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=MIXED + 0.5, aspect="auto", interpolation="nearest")
        used |= {int(v) for v in grid[~np.isnan(grid)].ravel()}
        ax.set_xticks(range(len(groups)), [g.replace("_", "\n") for g in groups], fontsize=6)
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=6)
        ax.set_title(name, fontsize=8)
    for ax in list(axes.flat)[len(grids):]:
        ax.axis("off")
    legend = ", ".join(f"{_COLOUR_NAMES[code]} = {_device_label(code)}" for code in sorted(used))
    fig.suptitle(f"Placement maps: {legend}\nrows = layers, columns = tensor groups", fontsize=9)
    fig.tight_layout()
    return fig
