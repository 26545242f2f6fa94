"""Errors meant for people: the CLI prints them as one line and exits with code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (a bad path, a bad name, a bad file). The message is the whole story."""

    exit_code = 2


class BuildError(UserError):
    """An engine build failed; the message names the step and the log file."""

    exit_code = 1
