"""`moebench inspect` on files that are not MoE models: a vocabulary-only GGUF says it holds no weights (not 32
rows of zero bytes), a dense model says which strategies still apply; and such a vocabulary file is refused as
a sweep's model in one line."""

from __future__ import annotations

import numpy as np
from gguf import GGUFWriter

from conftest import run_cli


def _gguf(path, tensors: dict[str, tuple[int, ...]], block_count: int):
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(block_count)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    for name, shape in tensors.items():
        writer.add_tensor(name, np.ones(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_vocabulary_only_file_holds_no_weights(tmp_path):
    vocab = _gguf(tmp_path / "ggml-vocab-test.gguf", {}, block_count=32)
    result = run_cli("inspect", vocab)
    assert result.returncode == 0, result.stderr
    assert "holds no tensors" in result.stdout and "nothing to place" in result.stdout
    assert "layer" not in result.stdout.split("weights", 1)[1]  # no per-layer table of zeros


def test_plan_and_run_refuse_a_file_without_weights(tmp_path, mainline_engine):
    vocab = _gguf(tmp_path / "ggml-vocab-test.gguf", {}, block_count=32)
    config = tmp_path / "bench.yaml"
    config.write_text(f"models: [{{path: {vocab}}}]\nengines: [mainline]\n")
    for command in ("plan", "run"):
        refused = run_cli(command, config, "--out", tmp_path / "out") if command == "run" else run_cli(command, config)
        assert refused.returncode == 2 and "holds no weights" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_dense_model_names_the_strategies_that_still_apply(tmp_path):
    dense = _gguf(tmp_path / "dense.gguf", {
        "token_embd.weight": (32, 64), "blk.0.attn_q.weight": (64, 64), "blk.0.ffn_up.weight": (128, 64),
        "blk.1.attn_q.weight": (64, 64), "blk.1.ffn_up.weight": (128, 64), "output.weight": (32, 64)},
        block_count=2)
    result = run_cli("inspect", dense)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("no routed experts"))
    still, excluded = line.split("Strategies that still apply: ", 1)[1].split(" (not ", 1)
    assert {"all-gpu", "gpu-layers", "last-n-layers-cpu", "custom", "engine-fit"} <= set(still.split(", "))
    assert {"cpu-moe", "first-n-experts", "last-n-experts", "head-tail-experts", "partial-experts"} \
        <= set(excluded.split(":")[0].split(", "))
