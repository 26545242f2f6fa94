"""`moebench report`: report.md, the full table, plots and the community CSV of one sweep, readable at any size.

`write_report(folder)` writes, next to runs.csv (or into `out`):

- `report.md`: the hardware, model, engine build, outcome counts, the engine knobs (which vary, which are fixed);
  the best configuration (strategy, parameters and knobs) for pp / tg / balanced per (model, engine, tool)
  with the noise verdict; the top `TOP_N` configurations per (model, engine, tool) and headline test; the
  "Stability" section (`harness.analysis.stability`); failed and skipped rows (grouped by reason when there
  are many); the plots. Its size does not grow with the number of configurations;
- `table.csv`: every configuration and test (`summarize`'s `TABLE_COLUMNS`), linked from report.md;
- `plots/*.png|svg` (see `harness.analysis.plots`: at most the top 30 configurations and the baselines per bar
  chart, placement maps and telemetry timelines for the best and the baselines only);
- `community.csv`: `COMMUNITY_COLUMNS`, one row per (model, engine, tool, configuration, test), for sharing
  (`harness.analysis.community`).

`compare` and `render_compare` live in `harness.analysis.compare` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.analysis.community import COMMUNITY_COLUMNS, COMMUNITY_SCHEMA_VERSION, community_frame  # noqa: F401
from harness.analysis.compare import compare, render_compare  # noqa: F401 - re-exported
from harness.analysis.explain import explain_folder, explain_markdown
from harness.analysis.knobs import (KNOB_LABELS, axis_label, describe_fixed, knob_settings, knob_sort_key,
                                    varying_knobs)
from harness.analysis.load import load_meta, load_results
from harness.analysis.markdown import fmt, markdown_table  # noqa: F401 - fmt re-exported
from harness.analysis.plots import save_all
from harness.analysis.selection import TOP_N, top_configurations
from harness.analysis.stability import stability_section
from harness.analysis.stats import status_counts, summarize
from harness.analysis.verdicts import best_strategies
from harness.knobs import KNOB_TABLE
from harness.perf.calibration import calibration_dir
from harness.units import MIB

TABLE_FILE = "table.csv"
MAX_FAILED_ROWS = 30


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


def knob_lines(df: pd.DataFrame) -> list[str]:
    """The header's knob bullets: those that vary (with their values) and those fixed at a non-default value."""
    lines = []
    varied = varying_knobs(df)
    if varied:
        parts = [f"{k} ({KNOB_LABELS[k]}): "
                 + ", ".join(axis_label(v) for v in sorted(df[k].unique(), key=knob_sort_key)) for k in varied]
        lines.append(f"- **Knobs varied:** {'; '.join(parts)}")
    fixed = describe_fixed(df)
    if fixed:
        lines.append(f"- **Knobs fixed:** {fixed}")
    return lines


def header_lines(df: pd.DataFrame, table: pd.DataFrame, meta: dict, table_link: str | None) -> list[str]:
    sweep = (meta.get("config") or {}).get("name") or _first(df, "sweep") or "sweep"
    lines = [f"# moebench report: {sweep}", "", f"- **Hardware:** {hardware_line(df)}"]
    for _, m in df.drop_duplicates("model").iterrows():
        size = m.get("model_size_bytes")
        size_txt = f", {float(size) / MIB:,.1f} MiB" if pd.notna(size) else ""
        lines.append(f"- **Model:** {m['model']} ({m.get('model_arch')}, {m.get('model_quant')}{size_txt})")
    for _, e in df.drop_duplicates("engine").iterrows():
        commit = e.get("engine_commit")
        lines.append(f"- **Engine:** {e['engine']} (dialect {e.get('engine_dialect')}, build "
                     f"{fmt(e.get('engine_build'))}" + (f", commit {commit}" if pd.notna(commit) else "") + ")")
    many_engines = df["engine"].nunique() > 1
    for _, c in status_counts(df).iterrows():
        outcome = ", ".join(f"{int(c[k])} {k}" for k in ("ok", "failed", "skipped") if k in c and c[k])
        lines.append(f"- **Rows ({c['engine'] + ', ' if many_engines else ''}{c['tool']}):** {outcome}")
    lines += knob_lines(df)
    if len(table):
        configs = len(table.drop_duplicates(["sweep_label", "model", "engine", "tool", "config_key"]))
        link = f"; every one in [{table_link}]({table_link})" if table_link else ""
        lines.append(f"- **Configurations:** {configs:,} measured ok (model × engine × tool × strategy, parameters "
                     f"and knobs), {len(table):,} configuration × test rows{link}")
    return lines


def best_knobs(best: pd.DataFrame, table: pd.DataFrame, knobs: list[str]) -> list[str]:
    """Each best configuration's value of every knob in `knobs`, the default named (`ub=2048 fa=default`)."""
    scope = ["sweep_label", "model", "engine", "tool", "config_key"]
    rows = table.drop_duplicates(scope).set_index(scope)
    keys = list(zip(*(best[c] for c in scope[:-1]), best["best"]))
    return [knob_settings(rows.loc[key], knobs) if key in rows.index else "" for key in keys]


def best_lines(best: pd.DataFrame, table: pd.DataFrame, model: list[str], knobs: list[str]) -> list[str]:
    lines = ["## Best configuration", ""]
    if best.empty:
        return lines + ["No successful measurement: nothing to rank."]
    view = best[["engine", *model, "tool", "criterion", "test", "best"]].copy()
    view.columns = ["engine", *model, "tool", "for", "test", "best"]
    if knobs:
        view["knobs"] = best_knobs(best, table, knobs)
    for name, col in (("tokens/s (or score)", "value"), ("95% CI low", "ci_low"), ("95% CI high", "ci_high"),
                      ("runner-up", "runner_up"), ("noise verdict", "verdict")):
        view[name] = best[col].to_numpy()
    return lines + [markdown_table(view, 2), "", "Balanced: geometric mean of pp and tg tokens/s, each divided by "
                    "the best of its kind (1.0 = best at both). A lead is beyond noise when the two 95% intervals "
                    "do not overlap." + (" Knobs: the best's value of every knob the sweep varies." if knobs else "")]


def top_lines(table: pd.DataFrame, model: list[str], table_link: str | None, n: int = TOP_N) -> list[str]:
    link = f"; every configuration and test: [{table_link}]({table_link})" if table_link else ""
    lines = ["## Top configurations (tokens/s, mean and 95% CI)", ""]
    if table.empty:
        return lines + ["None."]
    top = top_configurations(table, n)
    per = top.groupby(["sweep_label", "model", "engine", "tool", "test"]).size()
    total = table.groupby(["sweep_label", "model", "engine", "tool", "test"]).size().reindex(per.index)
    shown = "all" if (per == total).all() else f"the {n} fastest"
    lines += [f"Per tool and headline test, {shown} of {int(total.max()):,} configurations{link}.", ""]
    view = top[["engine", *model, "tool", "test", "config_key", "processes", "n", "tps_mean", "ci_low", "ci_high",
                "cv_pct", "predicted_vram_mib"]].copy()
    view.columns = ["engine", *model, "tool", "test", "configuration", "processes", "n", "tokens/s", "95% CI low",
                    "95% CI high", "CV %", "predicted VRAM (MiB)"]
    return lines + [markdown_table(view)]


def failure_lines(df: pd.DataFrame, limit: int = MAX_FAILED_ROWS) -> list[str]:
    problems = df[~df["ok"]]
    if problems.empty:
        return []
    lines = ["## Failed and skipped", ""]
    view = problems[["tool", "config_key", "test", "process_index", "status", "reason"]].fillna("").copy()
    view["reason"] = view["reason"].astype(str).str.slice(0, 120)
    if len(view) <= limit:
        view.columns = ["tool", "configuration", "test", "process", "status", "reason"]
        return lines + [markdown_table(view)]
    grouped = view.groupby(["tool", "status", "reason"], sort=False).agg(
        rows=("config_key", "size"), configurations=("config_key", "nunique"),
        example=("config_key", "first")).reset_index().sort_values("rows", ascending=False, kind="stable")
    more = len(grouped) - limit
    lines += [f"{len(view):,} rows, grouped by reason (each row in runs.csv):", "", markdown_table(grouped.head(limit))]
    return lines + (["", f"… and {more} more reasons."] if more > 0 else [])


def render_report(df: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame, meta: dict,
                  plots: list[Path] = (), plots_rel: Path | None = None, table_link: str | None = TABLE_FILE,
                  why: str = "") -> str:
    """report.md's text (see the module docstring); `table_link`: where the full table is (None: not written)."""
    model = ["model"] if table.get("model", pd.Series(dtype=str)).nunique() > 1 else []
    lines = header_lines(df, table, meta, table_link)
    lines += [""] + best_lines(best, table, model, varying_knobs(df))
    lines += [""] + top_lines(table, model, table_link)
    lines += [""] + stability_section(df, table)
    if why:
        lines += ["", why.rstrip()]
    failed = failure_lines(df)
    if failed:
        lines += [""] + failed
    if plots:
        lines += ["", "## Plots", ""]
        for png in plots:
            rel = (plots_rel / png.name) if plots_rel else png
            lines.append(f"![{png.stem}]({rel.as_posix()})")
    return "\n".join(lines) + "\n"


def _why(folder: Path) -> str:
    """The performance model's section (`moebench explain`: what the sweep stored of its plan, predicted with
    the calibrations), where this machine has a calibration."""
    if not any(calibration_dir().glob("*/*.json")) or not (folder / "meta.json").is_file():
        return ""
    explained = explain_folder(folder)
    return explain_markdown(explained) if explained.calibrations else ""


def table_file_frame(table: pd.DataFrame) -> pd.DataFrame:
    """table.csv's columns: the summary's, less the knobs `listed_when_set` that no row sets (so a folder written
    before such a knob existed writes the table.csv it wrote then)."""
    unset = [k.name for k in KNOB_TABLE if k.listed_when_set and k.name in table
             and not (table[k.name].fillna("").astype(str) != "").any()]
    return table.drop(columns=unset)


def write_report(folder: str | Path, out: str | Path | None = None, with_plots: bool = True) -> dict:
    """Write report.md, table.csv, plots/ and community.csv for one results folder; returns the paths and
    frames."""
    df = load_results(folder)
    folder = Path(df["sweep_dir"].iat[0]) if len(df) else Path(folder)
    out = Path(out) if out else folder
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(df)
    best = best_strategies(table)
    meta = load_meta(folder)
    plots = save_all(df, table, out / "plots", best) if with_plots else []
    table_path = out / TABLE_FILE
    table_file_frame(table).to_csv(table_path, index=False)
    report = out / "report.md"
    report.write_text(render_report(df, table, best, meta, plots, Path("plots"), TABLE_FILE, _why(folder)))
    community = out / "community.csv"
    community_frame(df, table, meta.get("moebench_version")).to_csv(community, index=False)
    return {"report": report, "table_csv": table_path, "community": community, "plots": plots, "table": table,
            "best": best}
