"""Measuring through llama-server: controlled prompt and generation lengths (token ids, `cache_prompt: false`,
`ignore_eos`, fixed seeds), the engine's own timings, time to first token, and optionally several requests at
once (`bench.concurrency`), the way a server is really used."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.config import BenchSettings
from harness.runner.llama_bench import BenchTest
from harness.runner.llama_server import CompletionTimings, LlamaServer, ServerError, prompt_tokens


def server_args(bench: BenchSettings, extra: list[str]) -> list[str]:
    """The server's own arguments: one slot per concurrent request, each with `ctx` tokens; `extra`: the
    configuration's knob and placement arguments (`harness.runner.commands`)."""
    slots = max(bench.concurrency)
    return ["-c", str(bench.ctx * slots), "-np", str(slots), *extra]


def measure_server(binary: Path, model: Path, vocab_size: int, bench: BenchSettings, args: list[str],
                   log_path: Path, timeout_s: float, cpus: tuple[int, ...] | None = None
                   ) -> tuple[list[str], list[BenchTest]]:
    """Start the server with `args` (`server_args`), warm it up, measure; prompt sizes with the first
    generation size, generation sizes with the first prompt size; concurrency levels above 1 give aggregate
    generation speed (`tg16x4`): all requests' generated tokens over the wall span from the first request's
    first token to the last one's end."""
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerError(f"timed out after {timeout_s:.0f} s")
        return remaining

    with LlamaServer(binary, model, args, log_path=log_path,
                     ready_timeout_s=timeout_s, cpus=cpus) as server:
        server.complete(prompt_tokens(16, vocab_size), 4, timeout_s=left())  # warm-up
        first_pp, first_tg = bench.prompt_tokens[0], bench.gen_tokens[0]
        pairs = [(p, first_tg) for p in bench.prompt_tokens]
        pairs += [(first_pp, g) for g in bench.gen_tokens if (first_pp, g) not in pairs]
        timings: dict[tuple[int, int], list[CompletionTimings]] = {}
        for n_prompt, n_gen in pairs:
            timings[n_prompt, n_gen] = [
                server.complete(prompt_tokens(max(n_prompt, 1), vocab_size, seed=rep), max(n_gen, 1),
                                timeout_s=left())
                for rep in range(bench.repetitions)]
        tests = []
        for p in (p for p in bench.prompt_tokens if p):
            runs = timings[p, first_tg]
            test = _test(p, 0, [t.prompt_tps for t in runs])
            test.raw["ttft_ms"] = [t.ttft_ms for t in runs if t.ttft_ms is not None]
            test.raw["windows_mono"] = [(t.started_s, t.first_token_s) for t in runs]  # request to first token
            tests.append(test)
        for g in (g for g in bench.gen_tokens if g):
            runs = timings[first_pp, g]
            test = _test(0, g, [t.gen_tps for t in runs])
            test.raw["windows_mono"] = [(t.first_token_s, t.finished_s) for t in runs]  # first to last token
            tests.append(test)
        for level in (c for c in bench.concurrency if c > 1):
            samples, windows = [], []
            for rep in range(bench.repetitions):
                with ThreadPoolExecutor(level) as pool:
                    futures = [pool.submit(server.complete, prompt_tokens(max(first_pp, 1), vocab_size,
                                                                          seed=rep * 1000 + i),
                                           max(first_tg, 1), seed=i, timeout_s=left()) for i in range(level)]
                    done = [f.result() for f in futures]
                span = (min(t.first_token_s for t in done), max(t.finished_s for t in done))
                samples.append(sum(t.gen_tokens for t in done) / max(span[1] - span[0], 1e-9))  # aggregate
                windows.append(span)
            test = _test(0, first_tg, samples)
            test.raw.update(concurrency=level, windows_mono=windows,
                            tokens=max(first_tg, 1) * level * bench.repetitions)
            tests.append(test)
        return server.argv, tests


def _test(n_prompt: int, n_gen: int, samples: list[float]) -> BenchTest:
    mean = statistics.fmean(samples)
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return BenchTest(n_prompt, n_gen, 0, mean, std, samples, {})
