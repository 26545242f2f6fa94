"""Errors meant for people: the CLI prints them as one line and exits with code 2, never a traceback."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """A mistake the user can fix (a bad path, a bad name, a bad file). The message is the whole story."""

    exit_code = 2


class BuildError(UserError):
    """An engine build failed; the message names the step and the log file."""

    exit_code = 1


def did_you_mean(value: str, known) -> str:
    """` (did you mean 'x'?)` for the closest known name, or nothing."""

    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, value: str, known, known_label: str | None = None) -> UserError:
    """The one-line error for an unknown name: what it is, a suggestion, and every known name."""
    names = ", ".join(sorted(known)) or "none"
    return UserError(f"unknown {what} {value!r}{did_you_mean(value, known)}; {known_label or 'known'}: {names}")
