"""What measuring one process gives and needs, for every tool: `BenchTest` (one measured test and its
samples), `ProcessSettings` (the sweep's tests, the process's CPUs, its time limit), `RunFailed` (an engine that
failed, with the reason and the tail of its log), `BenchOutputError` (output that does not parse)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.results.record import test_name


class BenchTests(Protocol):
    """The sweep's tests (`harness.config.BenchSettings` is one): what a tool builds its arguments from."""

    prompt_tokens: list[int]
    gen_tokens: list[int]
    depth: list[int]
    concurrency: list[int]
    repetitions: int
    ctx: int

    def model_copy(self, *, update: dict) -> "BenchTests": ...


@dataclass
class BenchTest:
    """One measured test (a prompt-processing or a generation measurement) and its samples."""

    n_prompt: int
    n_gen: int
    n_depth: int
    tps_mean: float
    tps_stddev: float
    tps_samples: list[float]
    raw: dict

    @property
    def tokens(self) -> int:
        """Tokens processed over all measured repetitions (pp: prompt tokens, tg: generated tokens; concurrent
        requests count each request's tokens)."""
        if "tokens" in self.raw:
            return int(self.raw["tokens"])
        return (self.n_prompt + self.n_gen) * max(len(self.tps_samples), 1)

    @property
    def measured_s(self) -> float | None:
        """The engine's own measured time over all repetitions (llama-bench's samples_ns), if it said."""
        ns = self.raw.get("samples_ns")
        return sum(ns) / 1e9 if ns else None

    @property
    def sample_ms(self) -> float | None:
        """The mean duration of one measured repetition, ms: the engine's own (samples_ns) where it says, else
        the tokens of one repetition over its rate."""
        ns = self.raw.get("samples_ns")
        if ns:
            return sum(ns) / len(ns) / 1e6
        rates = [s for s in self.tps_samples if s > 0]
        if not rates:
            return None
        per_rep = self.tokens / len(self.tps_samples) if self.tps_samples else self.n_prompt + self.n_gen
        return sum(per_rep / s for s in rates) / len(rates) * 1000

    @property
    def name(self) -> str:
        """The test's name in the results (`harness.results.record.test_name`: `pp512`, `tg16x3@d128`)."""
        return test_name(self.n_prompt, self.n_gen, self.n_depth, self.raw.get("concurrency", 1))


class BenchOutputError(ValueError):
    """A tool's output holds no measurement that parses."""


class RunFailed(Exception):
    """A configuration's engine failed; the message is the row's reason."""


def failure(reason: str, output_tail: str) -> RunFailed:
    """`RunFailed` with the reason and the last lines of the engine's output."""
    tail = " | ".join(line.strip() for line in output_tail.strip().splitlines()[-5:])
    return RunFailed(f"{reason}: {tail}" if tail else reason)


@dataclass(frozen=True)
class ProcessSettings:
    """What one measuring process needs besides its configuration (which carries the knobs and the thread
    count): the sweep's tests, its CPUs, its time limit."""

    bench: BenchTests
    cpus: tuple[int, ...] | None
    timeout_s: float
