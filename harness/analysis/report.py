"""`moebench report` and `moebench compare`: markdown reports, plots and the community CSV.

`write_report(folder)` writes, next to runs.csv (or into `out`):

- `report.md`: the hardware line, model, engine build, the best placement for pp / tg / balanced per tool with
  the noise verdict, the outcome counts, and the full table (markdown, ready to paste);
- `plots/*.png|svg` (see `harness.analysis.plots`);
- `community.csv`: `COMMUNITY_COLUMNS`, one row per (engine, tool, placement, test), for sharing results.

`compare(folders)`: the same (tool, placement, test) side by side across results folders, with each folder's
mean tokens/s and its ratio to the first folder's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.analysis.load import load_meta, load_results
from harness.analysis.plots import save_all
from harness.analysis.stats import best_strategies, status_counts, summarize
from harness.store import SCHEMA_VERSION

COMMUNITY_SCHEMA_VERSION = 1
# The shared subset, stable across moebench versions (a change bumps COMMUNITY_SCHEMA_VERSION):
# community_schema_version, schema_version (of the runs.csv it came from), host_cpu, host_cpu_cores,
# host_ram_gib, gpu_name, gpu_vram_total_mib, gpu_pcie, engine, engine_dialect, engine_version, model,
# model_arch, model_quant, model_size_bytes, tool, strategy, strategy_params, placement, test, kind,
# n_prompt, n_gen, n_depth, concurrency, threads, n (samples), tps_mean, tps_ci_low, tps_ci_high (95%),
# ttft_ms_mean, predicted_vram_bytes, vram_peak_mib, pcie_mib_per_token, joules_per_token, moebench_version.
COMMUNITY_COLUMNS = (
    "community_schema_version", "schema_version", "host_cpu", "host_cpu_cores", "host_ram_gib", "gpu_name",
    "gpu_vram_total_mib", "gpu_pcie", "engine", "engine_dialect", "engine_version", "model", "model_arch",
    "model_quant", "model_size_bytes", "tool", "strategy", "strategy_params", "placement", "test", "kind",
    "n_prompt", "n_gen", "n_depth", "concurrency", "threads", "n", "tps_mean", "tps_ci_low", "tps_ci_high",
    "ttft_ms_mean", "predicted_vram_bytes", "vram_peak_mib", "pcie_mib_per_token", "joules_per_token",
    "moebench_version",
)


def fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(row[c], digits).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


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
    """`COMMUNITY_COLUMNS`, one row per (sweep, engine, tool, placement, test) measured ok."""
    from harness import __version__

    first = df[df["ok"]].drop_duplicates(["sweep_label", "engine", "tool", "placement", "test"])
    merged = table.merge(first.drop(columns=["strategy", "strategy_params", "kind", "concurrency", "tps_mean",
                                             "ttft_ms_mean", "vram_peak_mib", "pcie_mib_per_token",
                                             "joules_per_token", "param_value", "size", "depth"], errors="ignore"),
                         on=["sweep_label", "engine", "tool", "placement", "test"], how="left")
    merged = merged.rename(columns={"ci_low": "tps_ci_low", "ci_high": "tps_ci_high"})
    merged["community_schema_version"] = COMMUNITY_SCHEMA_VERSION
    merged["schema_version"] = merged.get("schema_version", SCHEMA_VERSION)
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
    for _, c in counts.iterrows():
        outcome = ", ".join(f"{int(c[k])} {k}" for k in ("ok", "failed", "skipped") if k in c and c[k])
        lines.append(f"- **Rows ({c['tool']}):** {outcome}")
    lines += ["", "## Best placement", ""]
    if best.empty:
        lines.append("No successful measurement: nothing to rank.")
    else:
        view = best[["engine", "tool", "criterion", "test", "best", "value", "ci_low", "ci_high", "runner_up",
                     "verdict"]].copy()
        view.columns = ["engine", "tool", "for", "test", "best", "tokens/s (or score)", "95% CI low",
                        "95% CI high", "runner-up", "noise verdict"]
        lines.append(markdown_table(view, 2))
        lines += ["", "Balanced: geometric mean of pp and tg tokens/s, each divided by the best of its kind "
                      "(1.0 = best at both)."]
    lines += ["", "## All measurements (tokens/s, mean and 95% CI)", ""]
    if table.empty:
        lines.append("None.")
    else:
        view = table[["engine", "tool", "placement", "test", "n", "tps_mean", "ci_low", "ci_high",
                      "predicted_vram_mib"]].copy()
        view.columns = ["engine", "tool", "placement", "test", "n", "tokens/s", "95% CI low", "95% CI high",
                        "predicted VRAM (MiB)"]
        lines.append(markdown_table(view))
    problems = df[~df["ok"]]
    if len(problems):
        lines += ["", "## Failed and skipped", ""]
        view = problems[["tool", "placement", "test", "status", "reason"]].fillna("").copy()
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


def compare(folders) -> pd.DataFrame:
    """Mean tokens/s of each (tool, placement, test) per folder (columns `<label>`), and `<label>/<first>`
    ratios; rows measured in only some folders keep NaN for the others."""
    df = load_results(folders)
    table = summarize(df)
    labels = list(dict.fromkeys(df["sweep_label"]))
    if table.empty:
        return pd.DataFrame(columns=["tool", "placement", "test", *labels])
    wide = table.pivot_table(index=["tool", "placement", "test"], columns="sweep_label", values="tps_mean",
                             aggfunc="first")
    wide = wide.reindex(columns=labels)
    base = labels[0]
    for label in labels[1:]:
        wide[f"{label}/{base}"] = wide[label] / wide[base]
    wide.columns.name = None
    return wide.reset_index()


def render_compare(frame: pd.DataFrame, df_engines: dict[str, str] | None = None) -> str:
    lines = ["# moebench compare", ""]
    for label, engine in (df_engines or {}).items():
        lines.append(f"- **{label}:** {engine}")
    lines += ["", "Tokens/s (mean) per folder, and ratios to the first folder.", "", markdown_table(frame, 2)]
    return "\n".join(lines) + "\n"
