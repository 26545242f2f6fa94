"""The closing summary of a sweep: mean tokens/s per configuration for prompt processing and generation,
and which configuration is best at each."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SummaryLine:
    tool: str
    engine: str
    what: str                    # the placement, or "engine defaults"
    pp_tps: float | None
    tg_tps: float | None
    status: str                  # ok, or why not


def summarize_sweep(csv_path: Path) -> list[SummaryLine]:
    lines: dict[tuple, SummaryLine] = {}
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["tool"], row["engine"], row["placement"] or "engine defaults", row["model"])
            line = lines.setdefault(key, SummaryLine(row["tool"], row["engine"], key[2], None, None, row["status"]))
            if row["status"] != "ok":
                line.status = row["status"]
                continue
            tps = float(row["tps_mean"])
            if row["test"].startswith("pp"):
                line.pp_tps = max(line.pp_tps or 0.0, tps)
            elif row["test"].startswith("tg"):
                line.tg_tps = max(line.tg_tps or 0.0, tps)
    return list(lines.values())


def best(lines: list[SummaryLine], attr: str) -> SummaryLine | None:
    scored = [line for line in lines if getattr(line, attr) is not None]
    return max(scored, key=lambda line: getattr(line, attr)) if scored else None
