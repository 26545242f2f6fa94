"""Where moebench keeps things it builds or writes once and reuses: engines, sources, synthetic models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: `$MOEBENCH_CACHE`, default `~/.cache/moebench`."""
    env = os.environ.get("MOEBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "moebench"
