"""The model inspector: tensor groups, byte accounting on every preset (full-size ones via their
tensor list), real files, odd tensor types, and bad inputs (missing, not GGUF, truncated)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFEndian, GGUFReader, GGUFWriter

from conftest import run_cli
from harness.cli import main
from harness.errors import UserError
from harness.models.gguf_file import BIG_ARRAY_ITEMS, read_gguf_header
from harness.models import (
    GROUP_NAMES,
    PRESETS,
    TensorGroup,
    classify_tensor,
    ffn_matrix,
    inspect_model,
    inspect_preset,
    layer_index,
    tensor_specs_bytes,
    preset_tensors_named,
    render_model_info,
    write_synthetic_model,
)

SMALL_PRESETS = [name for name, p in PRESETS.items() if not p.full_size]
G = TensorGroup


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {name: write_synthetic_model(folder / f"{name}.gguf", name) for name in SMALL_PRESETS}


# --- tensor groups --------------------------------------------------------------------------

@pytest.mark.parametrize("name, group, matrix", [
    # qwen3moe / qwen2moe
    ("blk.0.attn_q.weight", G.ATTENTION, None),
    ("blk.0.attn_q_norm.weight", G.NORMS, None),
    ("blk.0.ffn_gate_inp.weight", G.ROUTER, None),
    ("blk.12.ffn_gate_exps.weight", G.ROUTED_EXPERTS, "gate"),
    ("blk.12.ffn_up_exps.weight", G.ROUTED_EXPERTS, "up"),
    ("blk.12.ffn_down_exps.weight", G.ROUTED_EXPERTS, "down"),
    ("blk.3.ffn_gate_inp_shexp.weight", G.SHARED_EXPERTS, None),
    ("blk.3.ffn_up_shexp.weight", G.SHARED_EXPERTS, "up"),
    # glm4moe
    ("blk.1.exp_probs_b.bias", G.ROUTER, None),
    ("blk.1.post_attention_norm.weight", G.NORMS, None),
    ("blk.0.ffn_down.weight", G.DENSE_FFN, "down"),
    ("blk.1.ffn_gate_shexp.weight", G.SHARED_EXPERTS, "gate"),
    ("blk.46.nextn.eh_proj.weight", G.OTHER, None),
    ("blk.46.nextn.enorm.weight", G.NORMS, None),
    # deepseek2 (MLA)
    ("blk.5.attn_kv_a_mqa.weight", G.ATTENTION, None),
    ("blk.5.attn_kv_a_norm.weight", G.NORMS, None),
    ("blk.5.attn_kv_b.weight", G.ATTENTION, None),
    ("blk.5.attn_k_b.weight", G.ATTENTION, None),
    ("blk.5.attn_v_b.weight", G.ATTENTION, None),
    ("blk.5.attn_q_a.weight", G.ATTENTION, None),
    ("blk.5.attn_q_a_norm.weight", G.NORMS, None),
    ("blk.5.attn_q_b.weight", G.ATTENTION, None),
    ("blk.5.indexer.attn_q_b.weight", G.ATTENTION, None),
    # gpt-oss
    ("blk.7.attn_sinks.weight", G.ATTENTION, None),
    ("blk.7.attn_output.bias", G.ATTENTION, None),
    ("blk.7.ffn_gate_exps.bias", G.ROUTED_EXPERTS, "gate"),
    ("blk.7.ffn_down_exps.bias", G.ROUTED_EXPERTS, "down"),
    ("blk.7.ffn_gate_inp.bias", G.ROUTER, None),
    ("blk.7.ffn_gate_up_exps.weight", G.ROUTED_EXPERTS, "gate_up"),
    # qwen3next gated delta-net layers: the token mixer is the attention group
    ("blk.0.attn_qkv.weight", G.ATTENTION, None),
    ("blk.0.attn_gate.weight", G.ATTENTION, None),
    ("blk.0.ssm_conv1d.weight", G.ATTENTION, None),
    ("blk.0.ssm_a", G.ATTENTION, None),
    ("blk.0.ssm_dt.bias", G.ATTENTION, None),
    ("blk.0.ssm_ba.weight", G.ATTENTION, None),
    ("blk.0.ssm_out.weight", G.ATTENTION, None),
    ("blk.0.ssm_norm.weight", G.NORMS, None),
    # llama4 dense/MoE interleave, old mixtral per-expert tensors
    ("blk.2.ffn_up.weight", G.DENSE_FFN, "up"),
    ("blk.0.ffn_gate.3.weight", G.ROUTED_EXPERTS, "gate"),
    ("blk.0.ffn_norm.weight", G.NORMS, None),
    # outside the blocks
    ("token_embd.weight", G.EMBEDDINGS, None),
    ("output.weight", G.OUTPUT, None),
    ("output_norm.weight", G.NORMS, None),
    ("rope_freqs.weight", G.OTHER, None),
])
def test_classify_tensor(name, group, matrix):
    assert classify_tensor(name) is group
    assert ffn_matrix(name) == matrix


def test_layer_index():
    assert layer_index("blk.0.attn_q.weight") == 0
    assert layer_index("blk.93.ffn_down_exps.weight") == 93
    assert layer_index("token_embd.weight") is None
    assert layer_index("v.blk.3.attn_q.weight") is None


# --- byte accounting on every preset, from the plan -----------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_groups_add_up_to_the_tensor_bytes(name):
    plan = preset_tensors_named(name)
    info = inspect_preset(name)
    total = tensor_specs_bytes(plan)
    assert info.tensor_bytes_total == total
    assert sum(info.bytes_by_group.values()) == total
    assert sum(info.quant_bytes.values()) == total
    outside_layers = sum(s.n_bytes for s in plan if layer_index(s.name) is None)
    assert sum(layer.total_bytes for layer in info.layers) + outside_layers == total
    # every synthetic tensor has a real group but the MTP layer's projection (tensor_groups: `other`)
    assert info.bytes_by_group["other"] == sum(s.n_bytes for s in plan if ".nextn.eh_proj." in s.name)
    assert set(info.bytes_by_group) == set(GROUP_NAMES)


@pytest.mark.parametrize("name", list(PRESETS))
def test_hyper_parameters_and_layers(name):
    p = PRESETS[name]
    info = inspect_preset(name)
    assert (info.architecture, info.n_layers, info.n_experts, info.n_experts_used) == \
        (p.architecture, p.n_layers, p.n_experts, p.n_experts_used)
    assert (info.n_leading_dense_layers, info.n_shared_experts) == (p.n_leading_dense_layers, p.n_shared_experts)
    assert (info.n_embd, info.vocab_size, info.context_length) == (p.n_embd, p.vocab_size, p.context_length)
    assert info.moe_layers == [i for i in range(p.n_layers - p.nextn_predict_layers) if p.has_experts(i)]
    for layer in info.layers:
        is_dense = not p.has_experts(layer.index)
        assert (layer.bytes_by_group["dense_ffn"] > 0) == is_dense
        assert (layer.bytes_by_group["shared_experts"] > 0) == (not is_dense and p.n_shared_experts > 0)
        assert layer.bytes_by_group["attention"] > 0 and layer.bytes_by_group["norms"] > 0


@pytest.mark.parametrize("name", list(PRESETS))
def test_active_bytes_per_token(name):
    p = PRESETS[name]
    info = inspect_preset(name)
    g = info.bytes_by_group
    mtp_non_expert = sum(layer.total_bytes - layer.bytes_by_group["routed_experts"]
                         for layer in info.layers if layer.is_mtp)  # an MTP layer does not run
    expected = (sum(g.values()) - g["routed_experts"] - g["embeddings"] - mtp_non_expert
                + sum(round(layer.bytes_by_group["routed_experts"] * p.n_experts_used / p.n_experts)
                      for layer in info.layers if not layer.is_mtp)
                + g["embeddings"] // p.vocab_size)
    assert info.active_bytes_per_token == expected
    assert info.active_bytes_per_token < info.tensor_bytes_total


def test_qwen3_30b_expert_bytes():
    info = inspect_preset("qwen3-30b-a3b")
    per_layer_experts = 3 * 2048 * 768 * 128 // 256 * 144  # gate, up, down in Q4_K
    assert all(layer.bytes_by_group["routed_experts"] == per_layer_experts for layer in info.layers)
    assert info.bytes_by_group["routed_experts"] == 48 * per_layer_experts
    # the famous "3B active": a few GB of the ~16 GB per token
    assert 1.0e9 < info.active_bytes_per_token < 2.5e9


def test_summarize_mtp_layer_and_tied_embeddings():
    """A GLM-style file with an MTP layer (block_count 3, nextn_predict_layers 1) and no output.weight."""
    from harness.models import TensorRecord, summarize

    records = [TensorRecord("token_embd.weight", "Q8_0", (64, 100), 100 * 68)]
    for i in range(3):
        records += [TensorRecord(f"blk.{i}.attn_q.weight", "Q8_0", (64, 64), 1000),
                    TensorRecord(f"blk.{i}.ffn_up_exps.weight", "Q8_0", (64, 32, 8), 8000)]
    records.append(TensorRecord("blk.2.nextn.eh_proj.weight", "Q8_0", (128, 64), 500))
    meta = {"general.architecture": "glm4moe", "glm4moe.block_count": 3, "glm4moe.nextn_predict_layers": 1,
            "glm4moe.expert_count": 8, "glm4moe.expert_used_count": 2}
    info = summarize(records, meta)
    assert [layer.is_mtp for layer in info.layers] == [False, False, True]
    assert info.layers[2].bytes_by_group["other"] == 500
    assert info.n_leading_dense_layers == 0 and info.n_shared_experts == 0 and info.vocab_size == 100
    # two normal layers: attention + 2/8 of the experts; tied output = all of token_embd; + one embedding row
    assert info.active_bytes_per_token == 2 * (1000 + 2000) + 6800 + 68


# --- real files -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_inspect_file_matches_plan_and_reader(small_models, name):
    path = small_models[name]
    info = inspect_model(path)
    reader_total = sum(int(t.n_bytes) for t in GGUFReader(path).tensors)
    assert info.tensor_bytes_total == reader_total
    assert sum(info.bytes_by_group.values()) == reader_total
    assert info.file_size_bytes == path.stat().st_size > reader_total
    from_plan = inspect_preset(name).to_dict()
    from_file = info.to_dict()
    for key in ("path", "file_size_bytes", "files", "name"):
        from_plan.pop(key), from_file.pop(key)
    assert from_file == from_plan
    assert info.name == f"moebench synthetic {name} seed 0"


@pytest.mark.parametrize("endian", [GGUFEndian.LITTLE, GGUFEndian.BIG])
def test_header_reads_what_gguf_reader_reads(tmp_path, endian):
    """Our header reader against gguf's public GGUFReader on every kind of value, both byte orders, a
    non-default alignment: the same metadata (long arrays: their length only) and tensor table."""
    path = tmp_path / "odd.gguf"
    writer = GGUFWriter(path, "qwen3moe", endianess=endian)
    writer.add_custom_alignment(64)
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(BIG_ARRAY_ITEMS + 1)])
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(BIG_ARRAY_ITEMS + 1)])
    writer.add_array("small.strings", ["a", "bb", "ccc"])
    writer.add_array("small.ints", [1, 5, 3])
    writer.add_array("nested", [[1, 2], [3, 4, 5]])
    writer.add_bool("flag", True)
    writer.add_float32("f32", 0.1)
    writer.add_int64("i64", -5)
    tensors = {"token_embd.weight": np.arange(256, dtype=np.float32).reshape(4, 64),
               "output_norm.weight": np.ones(64, np.float16)}
    for name, data in tensors.items():
        writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in tensors.values():
        writer.write_tensor_data(data)
    writer.close()
    reader = GGUFReader(path)
    expected = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if fld.types[0] == fld.types[0].ARRAY:
            expected[f"{key}.count"] = len(fld.data)
            if len(fld.data) > BIG_ARRAY_ITEMS:
                continue
        expected[key] = fld.contents()
    header = read_gguf_header(path)
    assert header.metadata == expected
    assert header.metadata["tokenizer.ggml.tokens.count"] == BIG_ARRAY_ITEMS + 1
    assert "tokenizer.ggml.tokens" not in header.metadata and header.metadata["nested"] == [1, 2, 3, 4, 5]
    assert [(t.name, t.type_name, t.shape, t.n_bytes, t.offset) for t in header.tensors] == [
        (t.name, t.tensor_type.name, tuple(int(d) for d in t.shape), int(t.n_bytes), t.data_offset)
        for t in reader.tensors]


def test_to_dict_is_json_and_lists_tensors(small_models):
    info = inspect_model(small_models["tiny-glm"])
    data = json.loads(json.dumps(info.to_dict(include_tensors=True)))
    assert data["n_leading_dense_layers"] == 1 and data["moe_layers"] == [1, 2, 3, 4, 5]
    assert len(data["tensors"]) == len(info.tensors)
    exps = [t for t in data["tensors"] if t["group"] == "routed_experts"]
    assert {t["ffn_matrix"] for t in exps} == {"gate", "up", "down"}
    assert all(t["layer"] >= 1 for t in exps)
    assert "tensors" not in info.to_dict()


def test_text_report(small_models):
    text = render_model_info(inspect_model(small_models["tiny-glm"]))
    assert "glm4moe" in text and "routed_experts" in text and "shared_experts" in text
    layer_rows = [line for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(layer_rows) == PRESETS["tiny-glm"].n_layers


def test_cli_inspect_text_and_json(small_models, capsys):
    assert main(["inspect", str(small_models["tiny"])]) == 0
    assert "qwen3moe" in capsys.readouterr().out
    assert main(["inspect", str(small_models["tiny"]), "--json", "--tensors"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_experts"] == 16 and data["tensor_bytes_total"] == tensor_specs_bytes(preset_tensors_named("tiny"))
    assert len(data["tensors"]) == len(preset_tensors_named("tiny"))


def test_unknown_tensor_type_takes_its_size_from_the_layout(tmp_path):
    """ik_llama.cpp types (here IQ4_KS = 144) are not in the gguf package; inspect still sizes them."""
    path = tmp_path / "ik.gguf"
    writer = GGUFWriter(path, "qwen3moe")
    writer.add_tensor_info("blk.0.ffn_up_exps.weight", (4, 8, 256), np.dtype(np.float32), 1024, raw_dtype=144)
    writer.add_tensor_info("output_norm.weight", (64,), np.dtype(np.float32), 256)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.write_tensor_data(np.zeros(1024, np.uint8))
    writer.write_tensor_data(np.ones(64, np.float32))
    writer.close()
    info = inspect_model(path)
    records = {t.name: t for t in info.tensors}
    assert records["blk.0.ffn_up_exps.weight"].type_name == "IQ4_KS"
    assert records["blk.0.ffn_up_exps.weight"].n_bytes == 1024
    assert info.quant_bytes == {"IQ4_KS": 1024, "F32": 256}


# --- bad inputs -----------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=60)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "Traceback" not in result.stderr


def test_missing_file(tmp_path):
    path = tmp_path / "missing.gguf"
    with pytest.raises(UserError, match="no such file"):
        inspect_model(path)
    _assert_one_line_error(_cli("inspect", str(path)), path)


@pytest.mark.parametrize("content", [b"", b"GG", b"not a gguf file at all\n" * 10, b"\x00" * 4096])
def test_not_a_gguf_file(tmp_path, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a GGUF file") as info:
        inspect_model(path)
    assert str(path) in str(info.value)
    _assert_one_line_error(_cli("inspect", str(path)), path)


@pytest.mark.parametrize("fraction", [0.0000005, 0.0001, 0.002, 0.01, 0.5, 0.999999])
def test_truncated_gguf(small_models, tmp_path, fraction):
    whole = small_models["tiny"].read_bytes()
    cut = max(5, int(len(whole) * fraction))  # from inside the header/metadata to the last tensor
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole[:cut])
    with pytest.raises(UserError) as info:
        inspect_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "truncated" in message
    _assert_one_line_error(_cli("inspect", str(path)), path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(UserError, match="not a file"):
        inspect_model(tmp_path)
