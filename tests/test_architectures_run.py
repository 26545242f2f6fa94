"""Every tiny architecture preset loads and runs in each engine's llama-bench (a prompt and a generation test,
on the CPU), and its output names the architecture moebench wrote."""

from __future__ import annotations

import pytest

from harness import procs
from harness.models import PRESETS, synthetic_model
from harness.tools.llama_bench import parse_bench_json

TINY = [name for name, p in PRESETS.items() if not p.full_size and name != "small"]


@pytest.mark.parametrize("preset", TINY)
def test_tiny_preset_runs_in_llama_bench(engine, tmp_path, preset):
    model_path = synthetic_model(preset)
    out = tmp_path / "bench.json"
    argv = [str(engine.tool("llama-bench")), "-m", str(model_path), "-p", "16", "-n", "4", "-r", "1", "-t", "2",
            "-o", "json"]
    result = procs.run(argv, timeout_s=300, log_path=tmp_path / "bench.log", stdout_path=out)
    assert result.ok, result.output_tail
    tests = parse_bench_json(out.read_text())  # ik prints into the array for tiny-deepseek: the parser copes
    assert len(tests) == 2 and all(t.tps_mean > 0 for t in tests), tests
    arch = PRESETS[preset].architecture.split("-")[0].split("_")[0]
    assert arch in tests[0].raw["model_type"].lower().replace("-", ""), tests[0].raw["model_type"]


def test_bench_json_with_ik_lines_printed_inside_the_array():
    text = ('[\n================= Adjusted mainline llama.cpp MLA tensors to ik_llama.cpp\n'
            'Computed blk.0.attn_kv_b.weight as 512 x 512 of type q8_0 and stored in buffer CPU\n'
            '  {\n    "n_prompt": 16,\n    "n_gen": 0,\n    "avg_ts": 11.5,\n    "samples_ts": [11.5]\n  }\n]\n')
    (test,) = parse_bench_json(text)
    assert (test.n_prompt, test.tps_mean, test.tps_samples) == (16, 11.5, [11.5])
