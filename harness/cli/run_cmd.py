"""`moebench run [bench.yaml] [--out DIR] [--resume]` and `moebench validate [bench.yaml]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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


class RichProgress:
    """A progress bar with ETA, the current configuration and the last result (plain lines off a terminal)."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=True,
                            disable=not console.is_terminal)
        self.task = None
        self.current = ""

    def begin(self, total: int, already_done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("starting", total=total, completed=already_done)
        if already_done:
            self.console.print(f"{already_done} of {total} processes already done")

    def start(self, label: str) -> None:
        if self.current:
            self.bar.advance(self.task)
        self.current = label
        self.bar.update(self.task, description=label[:80])
        if not self.console.is_terminal:
            self.console.print(label)

    def result(self, text: str) -> None:
        self.console.print(f"  {text}" if not self.console.is_terminal else f"{self.current}: {text}")

    def close(self) -> None:
        self.bar.stop()


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner.sweep import run_sweep

    config = load_config(args.config)
    if args.vram_limit_gib is not None:
        config.vram_limit_gib = args.vram_limit_gib
    out = args.out if args.out is not None else config.resolve(config.output)
    console = Console(stderr=True, highlight=False)
    progress = RichProgress(console)
    try:
        folder = run_sweep(config, out, progress, resume=args.resume)
    finally:
        progress.close()
    print_summary(folder, Console(stderr=True, highlight=False, width=max(console.width, 150)))
    print(f"results: {folder / 'runs.csv'}")
    return 0


def print_summary(folder: Path, console: Console) -> None:
    """The closing summary: the report's own table and "best" (one definition, `harness.analysis`), with the
    95% intervals and the stability warnings."""
    from harness.analysis.load import load_results
    from harness.analysis.stats import headline_test, summarize
    from harness.analysis.verdicts import best_strategies

    df = load_results(folder)
    table = summarize(df)
    if table.empty:
        console.print("no successful measurement")
        return
    view = Table("tool", "engine", "configuration", "test", "tokens/s", "95% CI", "n", "warnings", title="summary")
    for (tool, engine), group in table.groupby(["tool", "engine"], sort=True):
        tests = [t for t in (headline_test(group, "pp"), headline_test(group, "tg")) if t]
        for _, r in group[group["test"].isin(tests)].sort_values(["test", "tps_mean"], ascending=[True, False]).iterrows():
            ci = "-" if r["ci_low"] != r["ci_low"] else f"{r['ci_low']:.1f}–{r['ci_high']:.1f}"
            view.add_row(escape(tool), escape(engine), escape(str(r["config_key"])), r["test"],
                         f"{r['tps_mean']:.1f}", ci, f"{r['n']} {r['unit']}", escape(str(r.get("warnings") or "")[:60]))
    console.print(view)
    for _, b in best_strategies(table).iterrows():
        console.print(escape(f"best for {b['criterion']} ({b['tool']}, {b['engine']}, {b['test']}): {b['best']}: "
                             f"{b['value']:.2f} — {b['verdict']}"))
    failed = df[~df["ok"]]
    if len(failed):
        console.print(f"{len(failed)} rows failed or skipped (see runs.csv and report.md)")


def cmd_validate(args: argparse.Namespace) -> int:
    """The file itself, then every knob value against each engine's tools (found by probing their --help);
    an engine that is not built or not found is named and left unchecked."""
    from harness.cpus import plan_budget
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
    check_knobs(request_from_config(config), engines, plan_budget(config.rpc_rig))
    axes = varying_knobs(config.bench)
    grid = f", {len(knob_grid(config.bench))} knob combinations ({' x '.join(axes)})" if axes else ""
    print(f"{args.config}: ok ({len(config.models)} models, {len(config.engines)} engines, tools: "
          f"{', '.join(config.tools)}{grid})")
    for line in unchecked:
        print(f"  knobs not checked against {line}")
    return 0
