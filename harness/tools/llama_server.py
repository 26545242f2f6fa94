"""llama-server as a measuring tool: one server, every test through HTTP (`harness.tools.server_process`):
controlled prompt and generation lengths (token ids, `cache_prompt: false`, `ignore_eos`, fixed seeds), the
engine's own timings, time to first token, and optionally several requests at once (`bench.concurrency`), the
way a server is really used. It holds `ctx` tokens per request slot; mainline's server logs its load report
with `-lv 4` and would re-fit a placement on its own unless told `--fit off`."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.tools.base import SERVER_PORT, HasFlag, PlannedRun, Tool, _Syntax
from harness.tools.measurement import BenchTest, BenchTests, ProcessSettings, failure
from harness.tools.server_process import CompletionTimings, LlamaServer, ServerError, prompt_tokens, server_argv


def server_args(bench: BenchTests, extra: list[str]) -> list[str]:
    """The server's own arguments (everything after `--port`): one slot per concurrent request, each with `ctx`
    tokens; `extra`: the configuration's knob and placement arguments (`Tool.args`)."""
    slots = max(bench.concurrency)
    return ["-c", str(bench.ctx * slots), "-np", str(slots), *extra]


def measure_server(binary: Path, model: Path, vocab_size: int, bench: BenchTests, args: list[str],
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
            test.ttft_ms = [t.ttft_ms for t in runs if t.ttft_ms is not None]
            test.windows_mono = [(t.started_s, t.first_token_s) for t in runs]  # request to first token
            tests.append(test)
        for g in (g for g in bench.gen_tokens if g):
            runs = timings[first_pp, g]
            test = _test(0, g, [t.gen_tps for t in runs])
            test.windows_mono = [(t.first_token_s, t.finished_s) for t in runs]  # first to last token
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
            test.concurrency, test.windows_mono = level, windows
            test.total_tokens = max(first_tg, 1) * level * bench.repetitions
            tests.append(test)
        return server.argv, tests


def _test(n_prompt: int, n_gen: int, samples: list[float]) -> BenchTest:
    mean = statistics.fmean(samples)
    std = statistics.stdev(samples) if len(samples) > 1 else 0.0
    return BenchTest(n_prompt, n_gen, 0, mean, std, samples)


class LlamaServerTool(Tool):
    name = "llama-server"

    def context_tokens(self, bench: BenchTests) -> int:
        """`ctx` per request slot."""
        return bench.ctx * max(bench.concurrency)

    def log_args(self, dialect: str, syntax: _Syntax | None) -> list[str]:
        if dialect == "mainline" and syntax and syntax.has("-lv"):
            return ["-lv", "4"]
        return []

    def keep_placement_args(self, dialect: str, has: HasFlag) -> list[str]:
        if dialect == "mainline" and has("--fit"):
            return ["--fit", "off"]  # mainline's server fits on its own by default and would move our tensors
        return []

    def model_depth(self, kind: str, depth: int, bench: BenchTests) -> int:
        """Its generation test is one request of the sweep's first prompt: its cache holds that many more."""
        return depth + bench.prompt_tokens[0] if kind == "tg" else depth

    def commands(self, conf: PlannedRun, bench: BenchTests, *, port: int | str = SERVER_PORT) -> list[list[str]]:
        """One server; its port is chosen when it starts (`SERVER_PORT` in a plan)."""
        return [server_argv(self.binary(conf), conf.model.path, port, server_args(bench, self.args(conf)))]

    def measure(self, conf: PlannedRun, settings: ProcessSettings, log_path: Path
                ) -> list[tuple[BenchTest, list[str]]]:
        try:
            argv, tests = measure_server(self.binary(conf), conf.model.path, conf.model.info.vocab_size,
                                         settings.bench, server_args(settings.bench, self.args(conf)), log_path,
                                         settings.timeout_s, cpus=settings.cpus)
            return [(test, argv) for test in tests]
        except ServerError as exc:
            tail = log_path.read_text(errors="replace") if log_path.exists() else ""
            raise failure(str(exc), tail[-4000:]) from None
