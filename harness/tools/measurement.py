"""What measuring one process gives and needs, for every tool: `BenchTest` (one measured test and its
samples), `ProcessSettings` (the sweep's tests, the process's CPUs, its time limit), `RunFailed` (an engine that
failed, with the reason and the tail of its log), `BenchOutputError` (output that does not parse)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """One measured test (a prompt-processing or a generation measurement) and its samples, with what its tool
    said of it beyond the speeds (each field empty where the tool says nothing of it)."""

    n_prompt: int
    n_gen: int
    n_depth: int
    tps_mean: float
    tps_stddev: float
    tps_samples: list[float]
    concurrency: int = 1                  # requests at once (llama-server's `tg16x4`); 1 for every other test
    windows_mono: list[tuple[float, float]] = field(default_factory=list)  # measured spans, time.monotonic() s
    ttft_ms: list[float] = field(default_factory=list)        # time to first token of each request (llama-server)
    total_tokens: int | None = None       # tokens over all repetitions where the tool counts them (concurrent)
    samples_ns: list[int] = field(default_factory=list)       # the engine's own time of each repetition (llama-bench)
    model_n_params: int | None = None     # the model's parameter count as the engine reports it (llama-bench)

    @property
    def tokens(self) -> int:
        """Tokens processed over all measured repetitions (pp: prompt tokens, tg: generated tokens; concurrent
        requests count each request's tokens)."""
        if self.total_tokens is not None:
            return self.total_tokens
        return (self.n_prompt + self.n_gen) * max(len(self.tps_samples), 1)

    @property
    def measured_s(self) -> float | None:
        """The engine's own measured time over all repetitions (llama-bench's samples_ns), if it said."""
        return sum(self.samples_ns) / 1e9 if self.samples_ns else None

    @property
    def sample_ms(self) -> float | None:
        """The mean duration of one measured repetition, ms: the engine's own (samples_ns) where it says, else
        the tokens of one repetition over its rate."""
        if self.samples_ns:
            return sum(self.samples_ns) / len(self.samples_ns) / 1e6
        rates = [s for s in self.tps_samples if s > 0]
        if not rates:
            return None
        per_rep = self.tokens / len(self.tps_samples) if self.tps_samples else self.n_prompt + self.n_gen
        return sum(per_rep / s for s in rates) / len(rates) * 1000

    @property
    def name(self) -> str:
        """The test's name in the results (`harness.results.record.test_name`: `pp512`, `tg16x3@d128`)."""
        return test_name(self.n_prompt, self.n_gen, self.n_depth, self.concurrency)


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
