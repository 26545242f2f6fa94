"""Placement strategies: each decides, for an inspected model, which tensors stay in system RAM.

A strategy is a small class (see `strategies.base.Strategy`) registered under the entry point group
`moebench.strategies`; the built-ins register there exactly like third-party plugins (pyproject.toml).
Strategies never emit engine flags: `harness.plan.flags` compiles their placements for each engine and tool.
"""

from strategies.base import Strategy, StrategyParams
from strategies.registry import ENTRY_POINT_GROUP, available_strategies, get_strategy

__all__ = ["ENTRY_POINT_GROUP", "Strategy", "StrategyParams", "available_strategies", "get_strategy"]
