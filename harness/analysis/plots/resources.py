"""What a placement costs against what it gives: predicted VRAM against generation speed with the Pareto
frontier (`plot_vram_pareto`), and bus traffic per token against speed (`plot_traffic`: PCIe, or the RPC rig's
loopback without a GPU). Every configuration is a point; only the frontier's points are named (at most
`MAX_NAMES`)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from harness.analysis.stats import headline_test

MAX_NAMES = 12


def pareto_front(points: pd.DataFrame, cost: str, gain: str) -> pd.DataFrame:
    """The rows no other row beats (less or equal cost and more or equal gain, one of them strictly)."""
    pts = points.dropna(subset=[cost, gain]).sort_values([cost, gain], ascending=[True, False])
    keep, best = [], -math.inf
    for index, value in zip(pts.index, pts[gain]):
        if value > best:
            keep.append(index)
            best = value
    return pts.loc[keep]


def plot_vram_pareto(table: pd.DataFrame):
    """Predicted VRAM (MiB) against tg tokens/s per configuration, the Pareto frontier highlighted; measured
    `vram_peak_mib` as hollow markers when present."""
    test = headline_test(table, "tg")
    if not test:
        return None
    rows = table[table["test"] == test]
    if rows["predicted_vram_mib"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for tool, group in rows.groupby("tool"):
        ax.scatter(group["predicted_vram_mib"], group["tps_mean"], label=f"predicted VRAM ({tool})", alpha=0.7,
                   s=14 if len(group) > 100 else 36)
        if group["vram_peak_mib"].notna().any():
            ax.scatter(group["vram_peak_mib"], group["tps_mean"], facecolors="none", edgecolors="k",
                       label=f"measured VRAM peak ({tool})", s=14 if len(group) > 100 else 36)
        front = pareto_front(group, "predicted_vram_mib", "tps_mean")
        if len(front):
            ax.step(front["predicted_vram_mib"], front["tps_mean"], where="post", lw=2, alpha=0.6,
                    label=f"Pareto frontier ({tool})")
            for _, row in front.nlargest(MAX_NAMES, "tps_mean").iterrows():
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
            ax.scatter(group[column], group["tps_mean"], label=tool, alpha=0.7, s=14 if len(group) > 100 else 36)
        ax.set_xlabel(label)
        ax.set_ylabel("throughput (tokens/s)")
        ax.set_title(f"{test or kind}: traffic against speed")
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
