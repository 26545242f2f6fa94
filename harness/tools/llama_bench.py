"""llama-bench as a measuring tool: one fresh process per test (results otherwise depend on which tests ran
before, ggml-org/llama.cpp#18570), so each phase has its own process window; `-o json` gives every repetition's
tokens/s. Its lists take `/` (`,` separates tests), mainline's `-ot` rules `;`; ik's llama-bench takes only CPU
buffer types in `-ot`, so it cannot place weights on an RPC device."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness import procs
from harness.tools.base import SERVER_PORT, HasFlag, PlannedRun, RowTest, Tool, _Syntax
from harness.tools.measurement import BenchOutputError, BenchTest, BenchTests, ProcessSettings, failure


def bench_argv(binary: Path, model: Path, settings: BenchTests, extra: list[str] | None = None) -> list[str]:
    """llama-bench measuring `settings`' tests (one JSON record per test); `extra`: the configuration's knob and
    placement arguments (`Tool.args`)."""
    argv = [str(binary), "-m", str(model), "-o", "json", "-r", str(settings.repetitions),
            "-p", ",".join(map(str, settings.prompt_tokens)), "-n", ",".join(map(str, settings.gen_tokens))]
    if settings.depth != [0]:
        argv += ["-d", ",".join(map(str, settings.depth))]
    return argv + list(extra or [])


def bench_phases(bench: BenchTests) -> list[BenchTests]:
    """llama-bench's tests, one process each: every prompt size, then every generation size, at each depth."""
    phases = [(p, 0, d) for p in bench.prompt_tokens if p for d in bench.depth]
    phases += [(0, g, d) for g in bench.gen_tokens if g for d in bench.depth]
    return [bench.model_copy(update={"prompt_tokens": [p], "gen_tokens": [g], "depth": [d]}) for p, g, d in phases]


def _without_printed_lines(text: str) -> str:
    """The JSON lines only: ik prints to stdout while it loads some models, inside the array (a DeepSeek file
    converted by mainline: "================= Adjusted mainline llama.cpp MLA tensors to ik_llama.cpp",
    "Computed blk.0.attn_kv_b.weight as ..."); llama-bench's own JSON lines start with a bracket, a brace or
    indentation."""
    return "\n".join(line for line in text.splitlines() if not line or line[0] in " \t[]{}")


def parse_bench_json(text: str) -> list[BenchTest]:
    """Parse llama-bench's `-o json` stdout (a JSON array; log lines may surround it on stderr, and ik prints
    some inside it)."""
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise BenchOutputError("no JSON array in llama-bench output")
    try:
        records = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        try:
            records = json.loads(_without_printed_lines(text[start:end + 1]))
        except json.JSONDecodeError as exc:
            raise BenchOutputError(f"llama-bench JSON does not parse: {exc}") from None
    tests = []
    for rec in records:
        samples = [float(s) for s in rec.get("samples_ts", [])]
        tests.append(BenchTest(
            n_prompt=int(rec.get("n_prompt", 0)), n_gen=int(rec.get("n_gen", 0)),
            n_depth=int(rec.get("n_depth", 0)), tps_mean=float(rec["avg_ts"]),
            tps_stddev=float(rec.get("stddev_ts", 0.0)), tps_samples=samples,
            samples_ns=[int(ns) for ns in rec.get("samples_ns") or []],
            model_n_params=rec.get("model_n_params")))
    return tests


class LlamaBenchTool(Tool):
    name = "llama-bench"
    list_separator = "/"
    may_parse_unlisted_flags = False

    def override_separator(self, dialect: str) -> str:
        return ";" if dialect == "mainline" else ","  # mainline: ';' within one test; ik rejects ';'

    def context_tokens(self, bench: BenchTests) -> int:
        """Sized per test (prompt or generation plus depth; one process per test)."""
        return max(max(bench.prompt_tokens), max(bench.gen_tokens), 1) + max(bench.depth)

    def log_args(self, dialect: str, syntax: _Syntax | None) -> list[str]:
        return ["-v"]

    def fit_args(self, dialect: str, margin_mib: str, has: HasFlag) -> list[str]:
        if dialect == "mainline":
            return ["-fitt", margin_mib]
        return super().fit_args(dialect, margin_mib, has)

    def _ik_fit(self, has: HasFlag) -> list[str]:
        return [*super()._ik_fit(has), "1"]  # ik's llama-bench takes --fit 0|1

    def rpc_placement_error(self, dialect: str) -> str | None:
        if dialect != "ik":
            return None
        return ("ik_llama.cpp's llama-bench cannot place weights on an RPC device "
                "(only CPU buffer types are accepted in its -ot); use llama-server")

    def row_tests(self, bench: BenchTests, ubatch: int, n_ctx: int) -> list[RowTest]:
        """Its phases' tests (`bench_phases`): every prompt size, then every generation size, at each depth."""
        return [("pp" if phase.prompt_tokens[0] else "tg", phase.prompt_tokens[0] or phase.gen_tokens[0],
                 phase.depth[0]) for phase in bench_phases(bench)]

    def commands(self, conf: PlannedRun, bench: BenchTests, *, port: int | str = SERVER_PORT) -> list[list[str]]:
        binary, extra = self.binary(conf), self.args(conf)
        return [bench_argv(binary, conf.model.path, phase, extra) for phase in bench_phases(bench)]

    def measure(self, conf: PlannedRun, settings: ProcessSettings, log_path: Path
                ) -> list[tuple[BenchTest, list[str]]]:
        """One llama-bench process per test (a prompt size or a generation size, at each depth): the process's
        lifetime is then that phase's window, for telemetry, and no test depends on what ran before it."""
        tests = []
        for i, argv in enumerate(self.commands(conf, settings.bench)):
            stdout_path = log_path.with_suffix(f".{i}.json")
            result = procs.run(argv, timeout_s=settings.timeout_s, log_path=log_path, stdout_path=stdout_path,
                               cwd=log_path.parent, cpus=settings.cpus)
            exited = time.monotonic()
            if not result.ok:
                raise failure(result.describe_failure(), result.output_tail)
            try:
                found = parse_bench_json(stdout_path.read_text(errors="replace"))
            except BenchOutputError as exc:
                raise failure(str(exc), result.output_tail) from None
            for test in found:  # the measured repetitions end the process: [exit - engine's measured time, exit]
                measured = test.measured_s or result.duration_s
                test.windows_mono = [(exited - measured, exited)]
            tests += [(test, argv) for test in found]
        return tests
