"""Which configuration runs when: rounds of fresh processes, interleaved.

Round r runs one process of every configuration that still needs one, in a new random order each round
(seeded: round r's order is the same on every run and on resume), so drift and heat fall on all alike instead
of on whichever configuration happened to run during them. The first `processes` rounds run every
configuration; after them, with `until`, a round holds only the configurations whose interval is still wider
than the target, until `max_processes` or `max_minutes`. A configuration that failed or was skipped is not run
again. What the store already holds (resume) counts: a configuration's round is done once it has a row.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from harness.config import Until
from harness.intervals import Interval, interval
from harness.results.record import parse_samples


@dataclass
class History:
    """What one configuration has measured so far."""

    rounds: set[int] = field(default_factory=set)
    finished: str | None = None                   # why it runs no more (failed, skipped), if so
    means: dict[str, list[float]] = field(default_factory=dict)        # test -> one mean per process
    repetitions: dict[str, list[float]] = field(default_factory=dict)  # test -> the first process's samples

    def record(self, round_: int, status: str, test: str | None, mean: float | None,
               samples: list[float] | None) -> None:
        self.rounds.add(round_)
        if status != "ok":
            self.finished = status
            return
        if test is None or mean is None:
            return
        self.means.setdefault(test, []).append(mean)
        self.repetitions.setdefault(test, list(samples or []))

    def interval(self, test: str) -> Interval:
        return interval(self.means.get(test, []), self.repetitions.get(test))

    def widest_pct(self) -> float:
        """The widest half-width (% of the mean) over its tests; inf while some test has no interval."""
        widths = [self.interval(test).half_width_pct for test in self.means]
        if not widths:
            return math.inf
        return max(math.inf if math.isnan(w) else w for w in widths)


class Schedule:
    def __init__(self, ids: list[str], processes: int, until: Until | None, *, seed: int = 0,
                 shuffle: bool = True, history: dict[str, History] | None = None,
                 clock=time.monotonic):
        self.ids = list(dict.fromkeys(ids))
        self.processes = processes
        self.until = until
        self.seed = seed
        self.shuffle = shuffle
        self.history = {cid: (history or {}).get(cid) or History() for cid in self.ids}
        self.clock = clock
        self.started = clock()

    @property
    def max_rounds(self) -> int:
        return max(self.processes, self.until.max_processes if self.until else 0)

    def out_of_time(self) -> bool:
        if self.until is None or self.until.max_minutes is None:
            return False
        return self.clock() - self.started >= self.until.max_minutes * 60

    def needs(self, cid: str, round_: int) -> bool:
        h = self.history[cid]
        if h.finished is not None or round_ in h.rounds:
            return False
        if round_ < self.processes:
            return True
        if self.until is None or round_ >= self.until.max_processes or self.out_of_time():
            return False
        return h.widest_pct() > self.until.ci_pct

    def round(self, round_: int) -> list[str]:
        """The configurations of round `round_`, in their order for it."""
        todo = [cid for cid in self.ids if self.needs(cid, round_)]
        if self.shuffle:
            random.Random(f"{self.seed}:{round_}").shuffle(todo)
        return todo

    def rounds(self):
        """(round, configuration ids) for every round that has work; each round is decided when it starts,
        from what the rounds before it measured."""
        for round_ in range(self.max_rounds):
            todo = self.round(round_)
            if todo:
                yield round_, todo

    def progress_counts(self) -> tuple[int, int]:
        """(processes the fixed rounds need in all, processes already done): for a progress bar."""
        total = done = 0
        for cid in self.ids:
            h = self.history[cid]
            total += len(h.rounds) if h.finished else max(self.processes, len(h.rounds))
            done += len(h.rounds)
        return total, done


def history_from_rows(rows) -> dict[str, History]:
    """Each configuration's history from the rows of runs.csv as the reader gives them
    (`harness.results.reader.read_records`, through `ResultsStore.rows`; version-1 rows are process 0)."""
    out: dict[str, History] = {}
    for row in rows:
        cid = row.get("config_id")
        if not cid:
            continue
        try:
            round_ = int(row.get("process_index") or 0)
        except (TypeError, ValueError):
            round_ = 0
        mean = float(row["tps_mean"]) if row.get("tps_mean") not in (None, "") else None
        out.setdefault(cid, History()).record(round_, row.get("status") or "", row.get("test") or None, mean,
                                              parse_samples(row.get("tps_samples")))
    return out
