"""llama-bench's JSON as ik prints it for a mainline-converted DeepSeek file (every small preset runs in both
engines' llama-bench: tests/test_synth.py test_engine_loads_and_runs_small_preset)."""

from __future__ import annotations

from harness.tools.llama_bench import parse_bench_json


def test_bench_json_with_ik_lines_printed_inside_the_array():
    text = ('[\n================= Adjusted mainline llama.cpp MLA tensors to ik_llama.cpp\n'
            'Computed blk.0.attn_kv_b.weight as 512 x 512 of type q8_0 and stored in buffer CPU\n'
            '  {\n    "n_prompt": 16,\n    "n_gen": 0,\n    "avg_ts": 11.5,\n    "samples_ts": [11.5]\n  }\n]\n')
    (test,) = parse_bench_json(text)
    assert (test.n_prompt, test.tps_mean, test.tps_samples) == (16, 11.5, [11.5])
