"""The command line's table of commands (`harness.cli.COMMAND_MODULES`): each command is registered by the
module the table names, and only that module is imported to run it."""

from __future__ import annotations

import argparse
import importlib

from harness.cli import COMMAND_MODULES, build_parser, command_modules


def _registered(module: str) -> set[str]:
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    return set(sub.choices)


def test_the_table_names_each_commands_own_module():
    for module in set(COMMAND_MODULES.values()):
        assert _registered(module) == {c for c, m in COMMAND_MODULES.items() if m == module}, module


def test_a_command_registers_only_its_module_and_help_all():
    assert command_modules(["synth", "out.gguf", "--preset", "tiny"]) == ["harness.cli.models_cmd"]
    assert command_modules(["--help"]) == list(dict.fromkeys(COMMAND_MODULES.values()))
    assert command_modules(["no-such-command"]) == command_modules([])
    parser = build_parser(["inspect", "model.gguf"])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"synth", "inspect"}
    assert set(next(a for a in build_parser([])._actions
                    if isinstance(a, argparse._SubParsersAction)).choices) == set(COMMAND_MODULES)
