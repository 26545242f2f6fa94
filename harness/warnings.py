"""A row's stability warnings as typed values (hyperfine-style: what kind, the sentence, what to do about it), and
the one way a runs.csv `warnings` cell holds them.

`RowWarning(kind, message, remedy)`: `kind` is one of `KINDS` (the report groups by it), `message` the sentence
the run's progress line and the report show, `remedy` what a person can do.

Kinds a person acts on are per-row warnings; `NOTE_KINDS` are not: a short test's telemetry figures come from
few samples at any sensible sampling rate, and nothing about the row is wrong, so the runner no longer writes it
on rows (issue 20) and the analysis reports it once per sweep (`MIN_TELEMETRY_SAMPLES`); older rows that carry
it are read and counted the same way.

The cell:
- written (`encode_warnings`): a JSON list of {"kind", "message", "remedy"} objects, "" when there is none;
- read (`decode_warnings`): that JSON, or the free text older rows hold (schema 1 and 2: the messages joined by
  "; "), whose kinds are recovered by `legacy_kind`, the regex the report used before warnings had a kind (the
  text up to the first digit or colon: "cv 12% >= 10%" → "cv", "GPU throttled: power cap" → "GPU throttled").
  That regex lives only here, for those old cells. A JSON cell is told apart by its leading "[" (no message
  starts with one).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

CV = "cv"
SHORT_SAMPLES = "samples"
OVERSUBSCRIBED = "oversubscribed"
OUTLIER_REPETITION = "outlier repetition"
OUTLIER_PROCESS = "outlier process"
SWAP = "swap activity"
OTHER_PROCESSES = "other processes used"
GPU_THROTTLED = "GPU throttled"
FEW_TELEMETRY_SAMPLES = "telemetry"
KINDS = (CV, SHORT_SAMPLES, OVERSUBSCRIBED, OUTLIER_REPETITION, OUTLIER_PROCESS, SWAP, OTHER_PROCESSES,
         GPU_THROTTLED, FEW_TELEMETRY_SAMPLES)
NOTE_KINDS = (FEW_TELEMETRY_SAMPLES,)  # a sweep-level note, not a row's warning
MIN_TELEMETRY_SAMPLES = 10  # a phase's telemetry figures from fewer samples are a reading, not a summary

REMEDIES = {
    CV: "run more processes (bench.processes, or bench.until) on a quieter machine",
    SHORT_SAMPLES: "measure longer tests (more prompt_tokens or gen_tokens) so that one repetition lasts longer",
    OVERSUBSCRIBED: "give fewer threads (bench.threads, bench.threads_batch) or more CPUs",
    OUTLIER_REPETITION: "rerun; look for what else ran on the machine at that moment",
    OUTLIER_PROCESS: "rerun with more processes; look for what else ran on the machine at that moment",
    SWAP: "free system RAM, or keep fewer weights in it",
    OTHER_PROCESSES: "stop other work on the machine while the sweep runs",
    GPU_THROTTLED: "check the GPU's cooling and power limit",
    FEW_TELEMETRY_SAMPLES: "raise telemetry.hz or measure longer tests",
}


@dataclass(frozen=True)
class RowWarning:
    kind: str
    message: str
    remedy: str = ""

    def __str__(self) -> str:
        return self.message


def warning(kind: str, message: str) -> RowWarning:
    """A warning of one of `KINDS`, with that kind's remedy."""
    return RowWarning(kind, message, REMEDIES.get(kind, ""))


def messages(warnings) -> str:
    """The sentences joined by "; " (the progress line, the report's tables)."""
    return "; ".join(w.message for w in warnings)


def encode_warnings(warnings) -> str:
    """A row's `warnings` cell: a JSON list of {"kind", "message", "remedy"}; "" for none."""
    warnings = list(warnings)
    return json.dumps([asdict(w) for w in warnings], ensure_ascii=False) if warnings else ""


def decode_warnings(cell) -> list[RowWarning]:
    """The warnings of a cell: the JSON list `encode_warnings` writes, or an older row's "; "-joined free text
    (kinds by `legacy_kind`); [] for an empty cell (None, NaN, "")."""
    text = "" if cell is None else str(cell).strip()
    if not text or text.lower() == "nan":
        return []
    if text.startswith("["):
        return [RowWarning(str(item["kind"]), str(item["message"]), str(item.get("remedy") or ""))
                for item in json.loads(text)]
    found = []
    for item in text.split(";"):
        item = item.strip()
        if item and item.lower() != "nan":
            kind = legacy_kind(item)
            found.append(RowWarning(kind, item, REMEDIES.get(kind, "")))
    return found


def legacy_kind(text: str) -> str:
    """The kind of one free-text warning of a schema 1/2 row: its text before the first digit or colon,
    without trailing punctuation (only for those old cells; new ones carry their kind)."""
    text = str(text).strip()
    head = re.split(r"[\d:]", text, maxsplit=1)[0].strip(" :=<>≥≤-(")
    return head or text
