"""The telemetry timeline of one configuration (`plot_telemetry`: its time series, phases shaded from
`<id>.phases.json`) and which configurations get one (`pick_telemetry_row`: the fastest tg row with a telemetry
file, among all or among given configurations)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

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


def pick_telemetry_row(df: pd.DataFrame, configs=None) -> pd.Series | None:
    """The ok row of the fastest tg configuration whose telemetry file exists (else any with a file), among
    the rows whose config_key is in `configs` when given."""
    ok = df[df["ok"] & df["telemetry_file"].notna()] if "telemetry_file" in df else df.iloc[0:0]
    if configs is not None:
        ok = ok[ok["config_key"].isin(set(configs))]
    ok = ok[ok["telemetry_file"].astype(str).str.strip() != ""]
    if ok.empty:
        return None
    ranked = ok.assign(_tg=ok["kind"] == "tg").sort_values(["_tg", "tps_mean"], ascending=False)
    for _, row in ranked.iterrows():
        if (Path(row["sweep_dir"]) / str(row["telemetry_file"])).exists():
            return row
    return None
