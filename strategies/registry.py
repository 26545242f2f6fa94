"""Find strategies through the entry point group `moebench.strategies` (built-ins included)."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from harness.errors import UserError, unknown_name
from strategies.base import Strategy

ENTRY_POINT_GROUP = "moebench.strategies"


@lru_cache(maxsize=1)
def available_strategies() -> dict[str, type[Strategy]]:
    """Every registered strategy class by name. A plugin that fails to import is reported, not hidden."""
    found: dict[str, type[Strategy]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the built-ins down
            raise UserError(f"strategy plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise UserError(f"strategy plugin {ep.name!r} ({ep.value}) is not a Strategy subclass")
        if cls.name != ep.name:
            raise UserError(f"strategy plugin {ep.value} registers as {ep.name!r} but is named {cls.name!r}")
        found[ep.name] = cls
    return dict(sorted(found.items()))


def get_strategy(name: str) -> Strategy:
    known = available_strategies()
    if name in known:
        return known[name]()
    raise unknown_name("strategy", name, known, "known strategies")
