"""The `moebench` command line: one sub-module per command family, each with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import os
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
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader of our output went away (`moebench inspect MODEL | head`): stop quietly, as a program killed
    by SIGPIPE would (exit 141); stdout goes to /dev/null so the interpreter's final flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141

