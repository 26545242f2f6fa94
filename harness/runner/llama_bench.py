"""llama-bench as a measuring tool: the argument list for one configuration, and its JSON output parsed.

One fresh llama-bench process per configuration (results otherwise depend on which tests ran before,
ggml-org/llama.cpp#18570); `-o json` gives every repetition's tokens/s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.config import BenchSettings


@dataclass
class BenchTest:
    """One llama-bench test (a prompt-processing or a generation measurement) and its samples."""

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
        kind = f"pp{self.n_prompt}" if self.n_gen == 0 else f"tg{self.n_gen}"
        if self.n_prompt and self.n_gen:
            kind = f"pp{self.n_prompt}+tg{self.n_gen}"
        if self.raw.get("concurrency", 1) > 1:
            kind += f"x{self.raw['concurrency']}"  # aggregate over that many concurrent requests
        return f"{kind}@d{self.n_depth}" if self.n_depth else kind


def bench_argv(binary: Path, model: Path, settings: BenchSettings, extra: list[str] | None = None) -> list[str]:
    """llama-bench measuring `settings`' tests (one JSON record per test); `extra`: the configuration's knob and
    placement arguments (`harness.runner.commands`)."""
    argv = [str(binary), "-m", str(model), "-o", "json", "-r", str(settings.repetitions),
            "-p", ",".join(map(str, settings.prompt_tokens)), "-n", ",".join(map(str, settings.gen_tokens))]
    if settings.depth != [0]:
        argv += ["-d", ",".join(map(str, settings.depth))]
    return argv + list(extra or [])


class BenchOutputError(ValueError):
    pass


def parse_bench_json(text: str) -> list[BenchTest]:
    """Parse llama-bench's `-o json` stdout (a JSON array; log lines may surround it on stderr)."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise BenchOutputError("no JSON array in llama-bench output")
    try:
        records = json.loads(text[start:end + 1])
    except json.JSONDecodeError as exc:
        raise BenchOutputError(f"llama-bench JSON does not parse: {exc}") from None
    tests = []
    for rec in records:
        samples = [float(s) for s in rec.get("samples_ts", [])]
        tests.append(BenchTest(
            n_prompt=int(rec.get("n_prompt", 0)), n_gen=int(rec.get("n_gen", 0)),
            n_depth=int(rec.get("n_depth", 0)), tps_mean=float(rec["avg_ts"]),
            tps_stddev=float(rec.get("stddev_ts", 0.0)), tps_samples=samples, raw=rec))
    return tests
