"""Plots of a results frame (matplotlib, Agg backend). Each `plot_*` returns a Figure (or None when there is
nothing to draw); `save_all` writes every plot as PNG and SVG into a folder and returns the PNG paths.

- `plot_throughput`: grouped bars, pp and tg tokens/s per configuration, 95% CI error bars (one panel per
  model, engine and tool).
- `plot_param_sweep`: tokens/s against the strategy's numeric parameter (n, k), one line per strategy.
- `plot_vram_pareto`: predicted VRAM (and measured peak when present) against tg tokens/s, Pareto frontier.
- `plot_traffic`: PCIe MiB per token (loopback MiB per token without a GPU) against tokens/s.
- `plot_placement_map`: per configuration, layers x tensor groups coloured by device (rebuilt from the strategy).
- `plot_telemetry`: one configuration's telemetry time series, phases shaded from `<id>.phases.json` (the
  series are shown unshaded).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.analysis.stats import headline_test  # noqa: E402


def _err(rows: pd.DataFrame) -> np.ndarray:
    low = (rows["tps_mean"] - rows["ci_low"]).fillna(0).clip(lower=0).to_numpy()
    high = (rows["ci_high"] - rows["tps_mean"]).fillna(0).clip(lower=0).to_numpy()
    return np.vstack([low, high])


def plot_throughput(table: pd.DataFrame):
    """Grouped bars of pp and tg tokens/s per configuration with 95% CI error bars, one panel per (sweep,
    model, engine, tool)."""
    groups = list(table.groupby(["sweep_label", "model", "engine", "tool"], sort=True))
    many = table["sweep_label"].nunique() > 1
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 4.2 * len(groups)), squeeze=False)
    for ax, ((sweep, model, engine, tool), group) in zip(axes[:, 0], groups):
        tests = [t for t in (headline_test(group, "pp"), headline_test(group, "tg")) if t]
        configs = sorted(set(group["config_key"]))
        x = np.arange(len(configs))
        width = 0.8 / max(len(tests), 1)
        for i, test in enumerate(tests):
            rows = group[group["test"] == test].set_index("config_key").reindex(configs)
            ax.bar(x + (i - (len(tests) - 1) / 2) * width, rows["tps_mean"].fillna(0), width, yerr=_err(rows),
                   capsize=3, label=test)
        ax.set_xticks(x, configs, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_title(f"Throughput per configuration, mean with 95% CI — {model}, {tool}, {engine}"
                     + (f" ({sweep})" if many else ""))
        ax.legend(title="test")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_param_sweep(table: pd.DataFrame):
    """tokens/s against the numeric strategy parameter, one line per (strategy, model, engine, tool), pp and
    tg panels."""
    param = table[table["param_value"].notna()]
    if param.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, ("pp", "tg")):
        test = headline_test(table, kind)
        rows = param[param["test"] == test] if test else param.iloc[0:0]
        many = rows["sweep_label"].nunique() > 1
        for (sweep, model, engine, strategy, tool), line in rows.groupby(["sweep_label", "model", "engine",
                                                                          "strategy", "tool"]):
            line = line.sort_values("param_value")
            ax.errorbar(line["param_value"], line["tps_mean"], yerr=_err(line), marker="o", capsize=3,
                        label=f"{strategy} ({model}, {engine}, {tool}{', ' + sweep if many else ''})")
        ax.set_xlabel("strategy parameter (n or k)")
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_title(f"{test or kind}: tokens/s against the parameter")
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pareto_front(points: pd.DataFrame, cost: str, gain: str) -> pd.DataFrame:
    """The rows no other row beats (less or equal cost and more or equal gain, one of them strictly)."""
    pts = points.dropna(subset=[cost, gain]).sort_values([cost, gain], ascending=[True, False])
    front, best = [], -math.inf
    for _, row in pts.iterrows():
        if row[gain] > best:
            front.append(row)
            best = row[gain]
    return pd.DataFrame(front)


def plot_vram_pareto(table: pd.DataFrame):
    """Predicted VRAM (MiB) against tg tokens/s per placement, the Pareto frontier highlighted; measured
    `vram_peak_mib` as hollow markers when present."""
    test = headline_test(table, "tg")
    if not test:
        return None
    rows = table[table["test"] == test]
    if rows["predicted_vram_mib"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for tool, group in rows.groupby("tool"):
        ax.scatter(group["predicted_vram_mib"], group["tps_mean"], label=f"predicted VRAM ({tool})", alpha=0.8)
        if group["vram_peak_mib"].notna().any():
            ax.scatter(group["vram_peak_mib"], group["tps_mean"], facecolors="none", edgecolors="k",
                       label=f"measured VRAM peak ({tool})")
        front = pareto_front(group, "predicted_vram_mib", "tps_mean")
        if len(front):
            ax.step(front["predicted_vram_mib"], front["tps_mean"], where="post", lw=2, alpha=0.6,
                    label=f"Pareto frontier ({tool})")
            for _, row in front.iterrows():
                ax.annotate(row["config_key"], (row["predicted_vram_mib"], row["tps_mean"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("VRAM (MiB)")
    ax.set_ylabel(f"{test} throughput (tokens/s)")
    ax.set_title(f"VRAM against generation speed ({test}) — upper left is better")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_traffic(table: pd.DataFrame):
    """PCIe MiB per token against tokens/s (loopback MiB per token, the RPC rig's traffic, without GPU data)."""
    column, label = "pcie_mib_per_token", "PCIe traffic (MiB/token)"
    if table["pcie_mib_per_token"].isna().all():
        column, label = "loopback_mib_per_token", "loopback (RPC) traffic (MiB/token)"
    if table[column].isna().all():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, kind in zip(axes, ("pp", "tg")):
        test = headline_test(table, kind)
        rows = table[table["test"] == test] if test else table.iloc[0:0]
        for tool, group in rows.groupby("tool"):
            ax.scatter(group[column], group["tps_mean"], label=tool, alpha=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_title(f"{test or kind}: traffic against speed")
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


GROUP_ORDER = ("embeddings", "attention", "norms", "router", "shared_experts", "dense_ffn", "routed_experts",
               "output", "other")


def placement_grid(model, strategy: str, params: dict | None) -> tuple[list[str], list[str], np.ndarray] | None:
    """(row labels, group labels, matrix) for one strategy: 0 CPU, 1 accelerator, 0.5 mixed, NaN none.
    Rows are `global` (tensors outside blocks) and each layer. None when the strategy cannot be rebuilt
    offline (an unknown plugin, a strategy that needs the engine)."""
    from harness.models import classify_tensor, layer_index
    from strategies import get_strategy

    try:
        placement = get_strategy(strategy).placement(model, params or {})
    except Exception:  # noqa: BLE001 - a plugin that is not installed here, or needs a live engine
        return None
    n_layers = 1 + max((layer_index(n) or 0) for n in placement.tensor_devices)
    cells: dict[tuple[int, str], list[int]] = {}
    for name, device in placement.tensor_devices.items():
        layer = layer_index(name)
        row = 0 if layer is None else layer + 1
        cells.setdefault((row, classify_tensor(name).value), []).append(0 if device == "cpu" else 1)
    groups = [g for g in GROUP_ORDER if any(k[1] == g for k in cells)]
    grid = np.full((n_layers + 1, len(groups)), np.nan)
    for (row, group), devices in cells.items():
        share = sum(devices) / len(devices)
        grid[row, groups.index(group)] = share if share in (0, 1) else 0.5
    return ["global"] + [f"blk.{i}" for i in range(n_layers)], groups, grid


def plot_placement_map(df: pd.DataFrame, model_file: str | None = None):
    """One panel per configuration in the results: layers x tensor groups, blue CPU, orange accelerator."""
    from matplotlib.colors import ListedColormap

    from harness.models import inspect_model

    if model_file is None:
        files = df["model_file"].dropna().unique() if "model_file" in df else []
        model_file = next((f for f in files if Path(f).exists()), None)
    if not model_file or not Path(model_file).exists():
        return None
    model = inspect_model(model_file)
    configs = df.drop_duplicates(["strategy", "strategy_params", "placement"])
    grids = []
    for _, row in configs.sort_values("config_key").iterrows():
        params = json.loads(row["strategy_params"]) if str(row["strategy_params"]).startswith("{") else {}
        grid = placement_grid(model, row["strategy"], params)
        if grid is not None:
            grids.append((row["config_key"], grid))
    if not grids:
        return None
    cols = min(4, len(grids))
    rows_n = math.ceil(len(grids) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 3.4 * rows_n), squeeze=False)
    cmap = ListedColormap(["#4c72b0", "#c9a0dc", "#dd8452"])
    for ax, (name, (ylabels, groups, grid)) in zip(axes.flat, grids):
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(groups)), [g.replace("_", "\n") for g in groups], fontsize=6)
        ax.set_yticks(range(len(ylabels)), ylabels, fontsize=6)
        ax.set_title(name, fontsize=8)
    for ax in list(axes.flat)[len(grids):]:
        ax.axis("off")
    fig.suptitle("Placement maps: blue = CPU (RAM), orange = accelerator (VRAM), violet = mixed; "
                 "rows = layers, columns = tensor groups", fontsize=9)
    fig.tight_layout()
    return fig


TELEMETRY_UNITS = {"rss_mib": "MiB", "uss_mib": "MiB", "cpu_pct": "%", "loopback_mib_s": "MiB/s",
                   "ram_available_mib": "MiB", "swap_used_mib": "MiB"}


def plot_telemetry(series: pd.DataFrame | None, title: str = "", windows: dict | None = None):
    """The telemetry time series of one configuration, one panel per metric family. `windows`, when known,
    maps a phase name to [(start_s, end_s), ...] and shades them (runs.csv does not store them)."""
    if series is None or series.empty or "t_s" not in series:
        return None
    metrics = [c for c in series.columns if c not in ("t_s", "proc_count", "ram_available_mib", "swap_used_mib",
                                                      "swap_io_pages_s") and not c.endswith("_clock_event_reasons")
               and series[c].notna().any()]
    if not metrics:
        return None
    fig, axes = plt.subplots(len(metrics), 1, figsize=(10, 2.0 * len(metrics)), sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        data = series[["t_s", metric]].dropna()
        ax.plot(data["t_s"], data[metric], lw=1.2)
        unit = TELEMETRY_UNITS.get(metric) or ("%" if metric.endswith("_pct") else
                                               "MiB/s" if metric.endswith("_mib_s") else
                                               "MiB" if metric.endswith("_mib") else
                                               "W" if metric.endswith("_w") else "")
        ax.set_ylabel(f"{metric}\n({unit})" if unit else metric, fontsize=8)
        ax.grid(alpha=0.3)
        for i, (phase, spans) in enumerate((windows or {}).items()):
            for start, end in spans:
                ax.axvspan(start, end, alpha=0.15, color=f"C{i + 1}", label=phase)
    axes[-1, 0].set_xlabel("time since the engine started (s)")
    fig.suptitle(title or "Telemetry timeline", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=110)
    fig.savefig(folder / f"{name}.svg")
    plt.close(fig)
    return png


def pick_telemetry_row(df: pd.DataFrame) -> pd.Series | None:
    """The ok row of the fastest tg configuration whose telemetry file exists (else any with a file)."""
    ok = df[df["ok"] & df["telemetry_file"].notna()] if "telemetry_file" in df else df.iloc[0:0]
    ok = ok[[(Path(d) / f).exists() for d, f in zip(ok["sweep_dir"], ok["telemetry_file"])]]
    if ok.empty:
        return None
    tg = ok[ok["kind"] == "tg"]
    return (tg if len(tg) else ok).sort_values("tps_mean", ascending=False).iloc[0]


def save_all(df: pd.DataFrame, table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write every plot that has data into `folder` as PNG and SVG; the PNG paths, in order."""
    from harness.analysis.load import load_phase_windows, load_telemetry

    folder = Path(folder)
    out = []
    figures = [("throughput", plot_throughput(table)), ("param_sweep", plot_param_sweep(table)),
               ("vram_pareto", plot_vram_pareto(table)), ("traffic", plot_traffic(table)),
               ("placement_map", plot_placement_map(df))]
    row = pick_telemetry_row(df)
    if row is not None:
        series = load_telemetry(row["sweep_dir"], row["telemetry_file"])
        windows = load_phase_windows(row["sweep_dir"], row["telemetry_file"])
        figures.append(("telemetry", plot_telemetry(series, f"Telemetry of {row['config_key']} ({row['tool']}, "
                                                            f"config {row['config_id']})", windows)))
    for name, fig in figures:
        if fig is not None:
            out.append(save_figure(fig, folder, name))
    return out


def figure_png(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (for notebooks: `IPython.display.Image(figure_png(fig))`), then closed."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
