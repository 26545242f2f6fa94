"""`moebench run [bench.yaml] [--out DIR] [--resume]` and `moebench validate [bench.yaml]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.cli.progress import RunProgress
from harness.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the sweep described by bench.yaml")
    run.add_argument("config", nargs="?", type=Path, default=Path("bench.yaml"), help="default: ./bench.yaml")
    run.add_argument("--out", type=Path, help="results folder (overrides `output:` in bench.yaml)")
    run.add_argument("--resume", action="store_true", help="continue a sweep: skip configurations with rows")
    run.add_argument("--vram-limit-gib", type=float, help="emulate a smaller card (overrides vram_limit_gib)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check bench.yaml without running anything")
    validate.add_argument("config", nargs="?", type=Path, default=Path("bench.yaml"))
    validate.set_defaults(func=cmd_validate)


RichProgress = RunProgress  # the name tune and calibrate import


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner.sweep import run_sweep

    config = load_config(args.config)
    if args.vram_limit_gib is not None:
        config.vram_limit_gib = args.vram_limit_gib
    out = args.out if args.out is not None else config.resolve(config.output)
    console = Console(stderr=True, highlight=False)
    progress = RunProgress(console)
    try:
        folder = run_sweep(config, out, progress, resume=args.resume)
    finally:
        progress.close()
    print_summary(folder, Console(stderr=True, highlight=False, width=max(console.width, 150)))
    print(f"results: {folder / 'runs.csv'}")
    return 0


SUMMARY_TOP = 5  # configurations per tool and headline test in the closing summary (report.md has them all)


def print_summary(folder: Path, console: Console) -> None:
    """The closing summary, one screen: the report's own table and "best" (one definition, `harness.analysis`)
    for the fastest few per tool and headline test, with the 95% intervals and the kinds of their stability
    warnings, then each kind of warning once with what to do about it, and the sweep's notes."""
    from harness.analysis.load import load_results
    from harness.analysis.selection import top_configurations
    from harness.analysis.stability import CONFIG, kinds_by_configuration, telemetry_note, warning_kinds
    from harness.analysis.stats import summarize
    from harness.analysis.verdicts import best_strategies

    df = load_results(folder)
    table = summarize(df)
    if table.empty:
        console.print("no successful measurement")
        return
    kinds = kinds_by_configuration(df)
    shown = top_configurations(table, SUMMARY_TOP)
    view = Table("tool", "engine", "configuration", "test", "tokens/s", "95% CI", "n", "warnings",
                 title=f"summary (the fastest {SUMMARY_TOP} per tool and test; all in report.md)")
    for _, r in shown.sort_values(["tool", "engine", "test", "tps_mean"], ascending=[True, True, True, False],
                                  kind="stable").iterrows():
        ci = "-" if r["ci_low"] != r["ci_low"] else f"{r['ci_low']:.1f}–{r['ci_high']:.1f}"
        found = ", ".join(kinds.get(tuple(r[c] for c in CONFIG), []))
        view.add_row(escape(r["tool"]), escape(r["engine"]), escape(str(r["config_key"])), r["test"],
                     f"{r['tps_mean']:.1f}", ci, f"{r['n']} {r['unit']}", escape(found))
    console.print(view)
    for _, b in best_strategies(table).iterrows():
        console.print(escape(f"best for {b['criterion']} ({b['tool']}, {b['engine']}, {b['test']}): {b['best']}: "
                             f"{b['value']:.2f} — {b['verdict']}"))
    total = len(table)
    for _, w in warning_kinds(df).iterrows():
        console.print(escape(f"warning: {w['kind']} in {w['configurations']} of {total} configuration × test rows "
                             f"(e.g. {w['example']}); what to do: {w['remedy'] or 'see report.md'}"))
    note = telemetry_note(df)
    if note:
        console.print(escape(f"note: {note}"))
    failed = df[~df["ok"]]
    if len(failed):
        console.print(f"{len(failed)} rows failed or skipped (see runs.csv and report.md)")


def cmd_validate(args: argparse.Namespace) -> int:
    """The file itself, then every knob value against each engine's tools (found by probing their --help);
    an engine that is not built or not found is named and left unchecked."""
    from harness.cpus import cpu_budget
    from harness.engines.discover import find_engine
    from harness.errors import UserError
    from harness.knobs import knob_grid, varying_knobs
    from harness.plan.planner import check_knobs
    from harness.plan.request import request_from_config

    config = load_config(args.config)
    engines, unchecked = [], []
    for spec in config.engines:
        try:
            engines.append(find_engine(spec.name, config.engine_paths()))
        except UserError as exc:
            unchecked.append(f"engine {spec.name}: {exc}")
    check_knobs(request_from_config(config), engines, cpu_budget(config.rpc_rig))
    axes = varying_knobs(config.bench)
    grid = f", {len(knob_grid(config.bench))} knob combinations ({' x '.join(axes)})" if axes else ""
    print(f"{args.config}: ok ({len(config.models)} models, {len(config.engines)} engines, tools: "
          f"{', '.join(config.tools)}{grid})")
    for line in unchecked:
        print(f"  knobs not checked against {line}")
    return 0
