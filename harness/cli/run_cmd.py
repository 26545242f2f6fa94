"""`moebench run [bench.yaml] [--out DIR]` and `moebench validate [bench.yaml]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the sweep described by bench.yaml")
    run.add_argument("config", nargs="?", type=Path, default=Path("bench.yaml"), help="default: ./bench.yaml")
    run.add_argument("--out", type=Path, help="results folder (overrides `output:` in bench.yaml)")
    run.add_argument("--resume", action="store_true", help="continue a sweep: skip configurations with rows")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check bench.yaml without running anything")
    validate.add_argument("config", nargs="?", type=Path, default=Path("bench.yaml"))
    validate.set_defaults(func=cmd_validate)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.runner.sweep import run_sweep

    config = load_config(args.config)
    out = args.out if args.out is not None else config.resolve(config.output)
    console = Console(stderr=True, highlight=False)
    folder = run_sweep(config, out, report=lambda msg: console.print(msg), resume=args.resume)
    print(f"results: {folder / 'runs.csv'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{args.config}: ok ({len(config.models)} models, {len(config.engines)} engines, tools: "
          f"{', '.join(config.tools)})")
    return 0
