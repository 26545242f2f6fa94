"""The `moebench` command line: one sub-module per command family, each with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import __version__
from harness.errors import UserError


# Each command's module (a family registers several): only the module of the command being run is imported,
# so `moebench synth` does not pay for the planner, pandas or the tuner. The order is `moebench --help`'s.
COMMAND_MODULES: dict[str, str] = {
    "engines": "harness.cli.engines_cmd",
    "synth": "harness.cli.models_cmd",
    "inspect": "harness.cli.models_cmd",
    "plan": "harness.cli.plan_cmd",
    "flags": "harness.cli.plan_cmd",
    "strategies": "harness.cli.plan_cmd",
    "run": "harness.cli.run_cmd",
    "validate": "harness.cli.run_cmd",
    "report": "harness.cli.analysis_cmd",
    "post": "harness.cli.analysis_cmd",
    "compare": "harness.cli.analysis_cmd",
    "calibrate": "harness.cli.perf_cmd",
    "predict": "harness.cli.perf_cmd",
    "explain": "harness.cli.perf_cmd",
    "tune": "harness.cli.tune_cmd",
}


def command_modules(argv: list[str]) -> list[str]:
    """The modules to register for `argv`: the named command's, or every one (no command, `--help`, or an
    unknown name, which argparse then answers with the whole list)."""
    named = next((arg for arg in argv if not arg.startswith("-")), None)
    if named in COMMAND_MODULES:
        return [COMMAND_MODULES[named]]
    return list(dict.fromkeys(COMMAND_MODULES.values()))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (sys.argv's arguments when None), with its command's module registered."""
    parser = argparse.ArgumentParser(
        prog="moebench",
        description="Benchmark where the weights of a Mixture-of-Experts model should live (llama.cpp, ik_llama.cpp).",
    )
    parser.add_argument("--version", action="version", version=f"moebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules(sys.argv[1:] if argv is None else argv):
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
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

