"""The `moebench` command line: one sub-module per command family, each with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from harness import __version__
from harness.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from harness.cli import engines_cmd, models_cmd, plan_cmd, run_cmd
    from harness.cli import analysis_cmd, perf_cmd, tune_cmd

    parser = argparse.ArgumentParser(
        prog="moebench",
        description="Benchmark where the weights of a Mixture-of-Experts model should live (llama.cpp, ik_llama.cpp).",
    )
    parser.add_argument("--version", action="version", version=f"moebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    engines_cmd.register(sub)
    models_cmd.register(sub)
    plan_cmd.register(sub)
    run_cmd.register(sub)
    analysis_cmd.register(sub)
    perf_cmd.register(sub)
    tune_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"moebench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("moebench: interrupted", file=sys.stderr)
        return 130

