"""`moebench run [bench.yaml] [--out DIR] [--resume]` and `moebench validate [bench.yaml]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
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
            self.console.print(f"{already_done} of {total} configurations already done")

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
    from harness.runner.summary import best, summarize_sweep
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
    lines = summarize_sweep(folder / "runs.csv")
    table = Table("tool", "engine", "placement", "pp tokens/s", "tg tokens/s", "status", title="summary")
    for line in sorted(lines, key=lambda x: (x.tool, x.engine, -(x.tg_tps or 0.0))):
        table.add_row(line.tool, line.engine, line.what, _tps(line.pp_tps), _tps(line.tg_tps), line.status)
    Console(stderr=True, highlight=False, width=max(console.width, 150)).print(table)
    for attr, name in (("pp_tps", "prompt processing"), ("tg_tps", "generation")):
        top = best(lines, attr)
        if top:
            console.print(f"best for {name}: {top.what} ({top.tool}, {top.engine}): {getattr(top, attr):.1f} tokens/s")
    print(f"results: {folder / 'runs.csv'}")
    return 0


def _tps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{args.config}: ok ({len(config.models)} models, {len(config.engines)} engines, tools: "
          f"{', '.join(config.tools)})")
    return 0
