"""`moebench report` and `moebench compare`: markdown reports, plots and the community CSV.

`write_report(folder)` writes, next to runs.csv (or into `out`):

- `report.md`: the hardware line, model, engine build, the best configuration for pp / tg / balanced per
  (model, engine, tool) with the noise verdict, the outcome counts, the "Stability" section
  (`harness.analysis.stability`: how the intervals were computed, noisy configurations, the runner's
  warnings), and the full table (markdown, ready to paste);
- `plots/*.png|svg` (see `harness.analysis.plots`);
- `community.csv`: `COMMUNITY_COLUMNS`, one row per (model, engine, tool, configuration, test), for sharing.

`compare` and `render_compare` live in `harness.analysis.compare` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.compare import compare, render_compare  # noqa: F401 - re-exported
from harness.analysis.load import load_meta, load_results
from harness.analysis.markdown import fmt, markdown_table  # noqa: F401 - fmt re-exported
from harness.analysis.plots import save_all
from harness.analysis.stability import stability_section
from harness.analysis.stats import GROUP, status_counts, summarize
from harness.analysis.verdicts import best_strategies

COMMUNITY_SCHEMA_VERSION = 2
# The shared subset, stable across moebench versions (a change bumps COMMUNITY_SCHEMA_VERSION):
# community_schema_version, schema_version (of the runs.csv it came from), host_cpu, host_cpu_cores,
# host_ram_gib, gpu_name, gpu_vram_total_mib, gpu_pcie, engine, engine_dialect, engine_version, model,
# model_arch, model_quant, model_size_bytes, tool, strategy, strategy_params, placement, test, kind,
# n_prompt, n_gen, n_depth, concurrency, threads, processes (fresh engine processes measured), n (samples of
# the interval: one per process with two or more processes, else the repetitions), tps_mean, tps_ci_low,
# tps_ci_high (95%), cv_pct (stdev / mean × 100 of those samples), warnings (the runner's stability warnings,
# "; "-joined), ttft_ms_mean, predicted_vram_bytes, vram_peak_mib, pcie_mib_per_token, joules_per_token,
# moebench_version.
# Version 2 (moebench with processes as the unit of replication) added processes, cv_pct and warnings, and has
# one row per (model, engine, tool, strategy, strategy_params, placement, test); version 1 had one per
# (engine, tool, placement, test) and n counted repetitions.
COMMUNITY_COLUMNS = (
    "community_schema_version", "schema_version", "host_cpu", "host_cpu_cores", "host_ram_gib", "gpu_name",
    "gpu_vram_total_mib", "gpu_pcie", "engine", "engine_dialect", "engine_version", "model", "model_arch",
    "model_quant", "model_size_bytes", "tool", "strategy", "strategy_params", "placement", "test", "kind",
    "n_prompt", "n_gen", "n_depth", "concurrency", "threads", "processes", "n", "tps_mean", "tps_ci_low",
    "tps_ci_high", "cv_pct", "warnings", "ttft_ms_mean", "predicted_vram_bytes", "vram_peak_mib",
    "pcie_mib_per_token", "joules_per_token", "moebench_version",
)


def _first(df: pd.DataFrame, col: str):
    if col not in df:
        return None
    values = df[col].dropna()
    return values.iloc[0] if len(values) else None


def hardware_line(df: pd.DataFrame) -> str:
    cpu = _first(df, "host_cpu") or "unknown CPU"
    cores, ram = _first(df, "host_cpu_cores"), _first(df, "host_ram_gib")
    gpu = _first(df, "gpu_name")
    parts = [f"{cpu}" + (f" ({int(cores)} cores)" if cores is not None else "")]
    if ram is not None:
        parts.append(f"{float(ram):g} GiB RAM")
    if gpu:
        vram = _first(df, "gpu_vram_total_mib")
        pcie = _first(df, "gpu_pcie")
        parts.append(f"{gpu}" + (f" ({float(vram) / 1024:.0f} GiB)" if vram is not None else "")
                     + (f", PCIe {pcie}" if pcie else ""))
    else:
        device = _first(df, "device")
        parts.append(f"no GPU; accelerator: {device}" if device else "no GPU")
    os_ = _first(df, "host_os")
    if os_:
        parts.append(str(os_))
    return " · ".join(parts)


def community_frame(df: pd.DataFrame, table: pd.DataFrame, moebench_version: str | None = None) -> pd.DataFrame:
    """`COMMUNITY_COLUMNS`, one row per configuration and test measured ok (a `summarize` row), the host,
    engine and model columns from its first ok row."""
    from harness import __version__

    first = df[df["ok"]].drop_duplicates(GROUP)
    keep = [c for c in first.columns if c in GROUP or c not in table.columns]
    merged = table.merge(first[keep].drop(columns=["tps_ci_low", "tps_ci_high"], errors="ignore"), on=GROUP,
                         how="left")
    merged = merged.rename(columns={"ci_low": "tps_ci_low", "ci_high": "tps_ci_high"})
    merged["community_schema_version"] = COMMUNITY_SCHEMA_VERSION
    merged["moebench_version"] = moebench_version or __version__
    for col in COMMUNITY_COLUMNS:
        if col not in merged:
            merged[col] = None
    return merged[list(COMMUNITY_COLUMNS)]


def render_report(df: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame, meta: dict,
                  plots: list[Path] = (), plots_rel: Path | None = None) -> str:
    sweep = (meta.get("config") or {}).get("name") or _first(df, "sweep") or "sweep"
    lines = [f"# moebench report: {sweep}", ""]
    lines.append(f"- **Hardware:** {hardware_line(df)}")
    models = df.drop_duplicates("model")
    for _, m in models.iterrows():
        size = m.get("model_size_bytes")
        size_txt = f", {float(size) / 2**20:,.1f} MiB" if pd.notna(size) else ""
        lines.append(f"- **Model:** {m['model']} ({m.get('model_arch')}, {m.get('model_quant')}{size_txt})")
    for _, e in df.drop_duplicates("engine").iterrows():
        commit = e.get("engine_commit")
        lines.append(f"- **Engine:** {e['engine']} (dialect {e.get('engine_dialect')}, build "
                     f"{fmt(e.get('engine_build'))}" + (f", commit {commit}" if pd.notna(commit) else "") + ")")
    counts = status_counts(df)
    many_engines = df["engine"].nunique() > 1
    for _, c in counts.iterrows():
        outcome = ", ".join(f"{int(c[k])} {k}" for k in ("ok", "failed", "skipped") if k in c and c[k])
        lines.append(f"- **Rows ({c['engine'] + ', ' if many_engines else ''}{c['tool']}):** {outcome}")
    model = ["model"] if table.get("model", pd.Series(dtype=str)).nunique() > 1 else []
    lines += ["", "## Best placement", ""]
    if best.empty:
        lines.append("No successful measurement: nothing to rank.")
    else:
        view = best[["engine", *model, "tool", "criterion", "test", "best", "value", "ci_low", "ci_high",
                     "runner_up", "verdict"]].copy()
        view.columns = ["engine", *model, "tool", "for", "test", "best", "tokens/s (or score)", "95% CI low",
                        "95% CI high", "runner-up", "noise verdict"]
        lines.append(markdown_table(view, 2))
        lines += ["", "Balanced: geometric mean of pp and tg tokens/s, each divided by the best of its kind "
                      "(1.0 = best at both). A lead is beyond noise when the two 95% intervals do not overlap."]
    lines += [""] + stability_section(df, table)
    lines += ["", "## All measurements (tokens/s, mean and 95% CI)", ""]
    if table.empty:
        lines.append("None.")
    else:
        view = table[["engine", *model, "tool", "config_key", "test", "processes", "n", "tps_mean", "ci_low",
                      "ci_high", "cv_pct", "predicted_vram_mib"]].copy()
        view.columns = ["engine", *model, "tool", "configuration", "test", "processes", "n", "tokens/s",
                        "95% CI low", "95% CI high", "CV %", "predicted VRAM (MiB)"]
        lines.append(markdown_table(view))
    problems = df[~df["ok"]]
    if len(problems):
        lines += ["", "## Failed and skipped", ""]
        view = problems[["tool", "config_key", "test", "process_index", "status", "reason"]].fillna("").copy()
        view.columns = ["tool", "configuration", "test", "process", "status", "reason"]
        view["reason"] = view["reason"].astype(str).str.slice(0, 120)
        lines.append(markdown_table(view))
    if plots:
        lines += ["", "## Plots", ""]
        for png in plots:
            rel = (plots_rel / png.name) if plots_rel else png
            lines.append(f"![{png.stem}]({rel.as_posix()})")
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, out: str | Path | None = None, with_plots: bool = True) -> dict:
    """Write report.md, plots/ and community.csv for one results folder; returns the paths and frames."""
    df = load_results(folder)
    folder = Path(df["sweep_dir"].iat[0]) if len(df) else Path(folder)
    out = Path(out) if out else folder
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(df)
    best = best_strategies(table)
    meta = load_meta(folder)
    plots = save_all(df, table, out / "plots") if with_plots else []
    report = out / "report.md"
    report.write_text(render_report(df, table, best, meta, plots, Path("plots")))
    community = out / "community.csv"
    community_frame(df, table, meta.get("moebench_version")).to_csv(community, index=False)
    return {"report": report, "community": community, "plots": plots, "table": table, "best": best}
