"""Synthetic MoE GGUF models: valid blocks, the tensor list, streaming/deterministic/atomic writing,
the cache, the `synth` command, and loading in the real engines (llama-bench)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gguf import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES, GGMLQuantizationType, GGUFReader, quants

from harness.cli import main
from harness.errors import UserError
from harness.tools.llama_bench import parse_bench_json
from harness.models import PRESETS, get_preset, preset_tensors_named, synthetic_model, write_synthetic_model
from harness.models import synth as synth_module
from harness.models.blocks import SUPPORTED_TYPES, WEIGHT_STD, block_geometry, random_tensor_bytes, tensor_nbytes
from harness.models.preset_tensors import tensor_specs_bytes
from harness.models.vocab import build_vocabulary
from harness.models.synth import preset_digest

SMALL_PRESETS = [name for name, p in PRESETS.items() if not p.full_size]
T = GGMLQuantizationType


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {name: write_synthetic_model(folder / f"{name}.gguf", name) for name in SMALL_PRESETS}


# --- blocks ---------------------------------------------------------------------------------

def _dequantize(raw: np.ndarray, ggml_type: GGMLQuantizationType) -> np.ndarray:
    if ggml_type == T.F32:
        return raw.view("<f4").astype(np.float64)
    if ggml_type == T.F16:
        return raw.view("<f2").astype(np.float64)
    return np.asarray(quants.dequantize(raw.reshape(1, -1), ggml_type), dtype=np.float64)


@pytest.mark.parametrize("ggml_type", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_random_blocks_dequantize_to_small_finite_weights(ggml_type):
    _, bytes_per_block = block_geometry(ggml_type)
    raw = random_tensor_bytes(ggml_type, bytes_per_block * 512, np.random.default_rng(1))
    assert raw.dtype == np.uint8 and raw.size == bytes_per_block * 512
    weights = _dequantize(raw, ggml_type)
    assert np.isfinite(weights).all()
    assert 0.5 * WEIGHT_STD < weights.std() < 2 * WEIGHT_STD
    assert abs(weights.mean()) < 0.2 * WEIGHT_STD
    assert np.abs(weights).max() < 0.2


def test_random_blocks_reject_partial_blocks_and_unsupported_types():
    with pytest.raises(ValueError, match="whole number"):
        random_tensor_bytes(T.Q8_0, 35, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot generate"):
        random_tensor_bytes(T.IQ2_XXS, 66, np.random.default_rng(0))


def test_tensor_nbytes():
    assert tensor_nbytes(T.Q8_0, (256, 4)) == 4 * 8 * 34
    assert tensor_nbytes(T.Q4_K, (2048, 768, 128)) == 2048 * 768 * 128 // 256 * 144
    assert tensor_nbytes(T.F32, (7,)) == 28
    with pytest.raises(ValueError, match="multiple"):
        tensor_nbytes(T.Q4_K, (1408, 4096))


# --- vocabulary -----------------------------------------------------------------------------

def test_vocabulary_layout():
    vocab = build_vocabulary(2048)
    assert vocab.size == 2048 and len(set(vocab.tokens)) == 2048
    assert vocab.tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert vocab.tokens[3] == "<0x00>" and vocab.tokens[3 + 10] == "<0x0A>" and vocab.tokens[258] == "<0xFF>"
    assert set(vocab.token_types[3:259]) == {6}  # BYTE
    assert "\u2581the" in vocab.tokens and "\u2581th" in vocab.tokens
    with pytest.raises(ValueError, match="smaller"):
        build_vocabulary(300)


# --- presets and tensor lists ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_plan_uses_only_tensors_the_architecture_defines(name):
    preset = get_preset(name)
    arch = next(a for a, n in MODEL_ARCH_NAMES.items() if n == preset.architecture)
    allowed = set()
    for kind in MODEL_TENSORS[arch]:
        template = TENSOR_NAMES[kind]
        for bid in range(preset.n_layers):
            allowed.add(template.format(bid=bid))
    plan = preset_tensors_named(name)
    assert len({s.name for s in plan}) == len(plan)
    for spec in plan:
        assert spec.name in allowed or spec.name.rsplit(".", 1)[0] in allowed, spec.name  # ssm_a has no suffix
        assert spec.shape[0] % block_geometry(spec.ggml_type)[0] == 0, spec.name
        assert spec.n_bytes == tensor_nbytes(spec.ggml_type, spec.shape)


def test_full_size_plans_have_the_real_shapes():
    qwen = {s.name: s for s in preset_tensors_named("qwen3-30b-a3b")}
    assert sum(1 for n in qwen if n.endswith("ffn_gate_exps.weight")) == 48
    assert qwen["blk.0.ffn_gate_exps.weight"].shape == (2048, 768, 128)
    assert qwen["blk.47.ffn_down_exps.weight"].shape == (768, 2048, 128)
    assert qwen["blk.0.ffn_down_exps.weight"].ggml_type == T.Q4_K  # 768 = 3 * 256
    assert qwen["blk.0.attn_q.weight"].shape == (2048, 4096)
    assert qwen["blk.0.attn_k.weight"].shape == (2048, 512)
    assert qwen["token_embd.weight"].shape == (2048, 151936)
    assert qwen["output.weight"].ggml_type == T.Q6_K
    assert qwen["blk.0.ffn_gate_inp.weight"].ggml_type == T.F32
    assert 15e9 < tensor_specs_bytes(list(qwen.values())) < 20e9

    glm = {s.name: s for s in preset_tensors_named("glm-4.5-air")}
    assert "blk.0.ffn_gate.weight" in glm and "blk.0.ffn_gate_exps.weight" not in glm
    assert glm["blk.0.ffn_up.weight"].shape == (4096, 10944)
    assert glm["blk.0.ffn_down.weight"].ggml_type == T.Q5_0  # 10944 is not a multiple of 256
    assert glm["blk.1.ffn_gate_exps.weight"].shape == (4096, 1408, 128)
    assert glm["blk.1.ffn_down_exps.weight"].ggml_type == T.Q5_0
    assert glm["blk.45.ffn_up_shexp.weight"].shape == (4096, 1408)
    assert glm["blk.45.exp_probs_b.bias"].shape == (128,)
    assert glm["blk.3.attn_q.weight"].shape == (4096, 96 * 128)
    assert glm["blk.3.attn_q.bias"].shape == (96 * 128,)
    assert glm["blk.46.nextn.eh_proj.weight"].shape == (8192, 4096)  # the MTP layer: block 46 of 47
    assert "blk.47.attn_norm.weight" not in glm


# --- writing --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_small_preset_file_matches_its_plan(small_models, name):
    path = small_models[name]
    assert path.stat().st_size < (150_000_000 if name == "small" else 20_000_000)  # small: 16 layers, ~130 MB
    reader = GGUFReader(path)
    plan = preset_tensors_named(name)
    assert [t.name for t in reader.tensors] == [s.name for s in plan]
    for tensor, spec in zip(reader.tensors, plan):
        assert tensor.tensor_type == spec.ggml_type, spec.name
        assert tuple(int(d) for d in tensor.shape) == spec.shape, spec.name
        assert tensor.n_bytes == spec.n_bytes, spec.name
    by_name = {t.name: t for t in reader.tensors}
    assert np.all(by_name["blk.0.attn_norm.weight"].data == 1.0)
    assert np.all(by_name["output_norm.weight"].data == 1.0)
    experts = by_name["blk.1.ffn_up_exps.weight"]
    weights = quants.dequantize(experts.data, experts.tensor_type)
    assert np.isfinite(weights).all() and 0.01 < float(weights.std()) < 0.04
    arch = PRESETS[name].architecture
    assert reader.get_field(f"{arch}.expert_feed_forward_length").contents() == PRESETS[name].expert_ff
    assert reader.get_field("tokenizer.ggml.model").contents() == "llama"
    assert len(reader.get_field("tokenizer.ggml.tokens").data) == PRESETS[name].vocab_size


def test_glm_metadata_has_what_both_loaders_require(small_models):
    reader = GGUFReader(small_models["tiny-glm"])
    for key, value in [("glm4moe.leading_dense_block_count", 1), ("glm4moe.expert_shared_count", 1),
                       ("glm4moe.expert_weights_scale", 1.0), ("glm4moe.nextn_predict_layers", 0),
                       ("glm4moe.expert_gating_func", 2), ("glm4moe.rope.dimension_count", 32)]:
        assert reader.get_field(key).contents() == value, key


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path):
    a = write_synthetic_model(tmp_path / "a.gguf", "tiny", seed=7)
    b = write_synthetic_model(tmp_path / "b.gguf", "tiny", seed=7)
    c = write_synthetic_model(tmp_path / "c.gguf", "tiny", seed=8)
    assert sha256(a) == sha256(b)
    assert sha256(a) != sha256(c)
    assert a.stat().st_size == c.stat().st_size


def test_big_tensors_repeat_one_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_module, "CHUNK_BYTES", 34 * 100)  # force tiling on every Q8_0 tensor
    path = write_synthetic_model(tmp_path / "tiled.gguf", "tiny", seed=3)
    reader = GGUFReader(path)
    experts = next(t for t in reader.tensors if t.name == "blk.0.ffn_gate_exps.weight")
    flat = np.asarray(experts.data).reshape(-1)
    assert flat.size == 256 * 128 * 16 // 32 * 34
    assert np.array_equal(flat[:3400], flat[3400:6800])
    assert [t.name for t in reader.tensors] == [s.name for s in preset_tensors_named("tiny")]
    again = write_synthetic_model(tmp_path / "tiled2.gguf", "tiny", seed=3)
    assert sha256(path) == sha256(again)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth_module._tensor_data

    def failing(spec, seed):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(spec, seed)

    monkeypatch.setattr(synth_module, "_tensor_data", failing)
    out = tmp_path / "model.gguf"
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_model(out, "tiny")
    assert list(tmp_path.iterdir()) == []


def test_not_enough_disk_space_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_module.shutil, "disk_usage", lambda _path: SimpleNamespace(free=10**9))
    with pytest.raises(UserError, match="not enough disk space"):
        write_synthetic_model(tmp_path / "big.gguf", "qwen3-30b-a3b")
    assert list(tmp_path.iterdir()) == []


def test_synthetic_model_is_idempotent(tmp_path, monkeypatch):
    first = synthetic_model("tiny", seed=2, cache_dir=tmp_path)
    assert first == tmp_path / "models" / f"tiny-{preset_digest(get_preset('tiny'))}-seed2.gguf"
    mtime = first.stat().st_mtime_ns
    digest = sha256(first)
    second = synthetic_model("tiny", seed=2, cache_dir=tmp_path)
    assert second == first and second.stat().st_mtime_ns == mtime and sha256(second) == digest
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path))
    assert synthetic_model("tiny", seed=2) == first
    assert first.stat().st_mtime_ns == mtime


def test_unknown_preset_suggests_the_closest_name(tmp_path):
    with pytest.raises(UserError, match="did you mean 'tiny-glm'") as info:
        write_synthetic_model(tmp_path / "x.gguf", "tiny-gml")
    assert "qwen3-30b-a3b" in str(info.value)
    with pytest.raises(UserError, match="unknown preset"):
        synthetic_model("nope", cache_dir=tmp_path)
    assert not (tmp_path / "x.gguf").exists()


# --- the `synth` command --------------------------------------------------------------------

def test_cli_synth_list(capsys):
    assert main(["synth", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(PRESETS)
    assert "GiB" in out[list(PRESETS).index("qwen3-30b-a3b")]


def test_cli_synth_writes_a_model(tmp_path, capsys):
    out = tmp_path / "sub" / "m.gguf"
    assert main(["synth", str(out), "--preset", "tiny", "--seed", "4"]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert sha256(out) == sha256(write_synthetic_model(tmp_path / "ref.gguf", "tiny", seed=4))


def test_cli_synth_unknown_preset_exits_2(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "m.gguf"), "--preset", "qwen3-30b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'qwen3-30b-a3b'" in err[0]
    assert main(["synth", str(tmp_path / "m.gguf")]) == 2


# --- loading in the real engines ------------------------------------------------------------

ENGINE_BENCH_PATHS = {
    "mainline": "build/mainline-11434.0.0/bin/llama-bench",
    "ik": "build/ik-0.1.5/bin/llama-bench",
}


@pytest.fixture(params=list(ENGINE_BENCH_PATHS))
def llama_bench(request) -> Path:
    from harness.paths import cache_dir

    path = cache_dir() / ENGINE_BENCH_PATHS[request.param]
    if not path.is_file():
        pytest.skip(f"{request.param} llama-bench not built yet ({path} missing; "
                    f"`moebench engines build {request.param}`)")
    return path


@pytest.mark.engine
@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_engine_loads_and_runs_small_preset(llama_bench, small_models, name):
    result = subprocess.run(
        [str(llama_bench), "-m", str(small_models[name]), "-p", "64", "-n", "16", "-r", "1", "-t", "2", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tests = parse_bench_json(result.stdout)  # ik prints into the array for tiny-deepseek
    pp = [t for t in tests if t.n_prompt == 64 and t.n_gen == 0]
    tg = [t for t in tests if t.n_gen == 16 and t.n_prompt == 0]
    assert len(pp) == 1 and len(tg) == 1, tests
    assert pp[0].tps_mean > 0 and tg[0].tps_mean > 0
    assert np.isfinite(pp[0].tps_mean) and np.isfinite(tg[0].tps_mean)


def test_a_changed_preset_is_not_taken_for_its_earlier_file(tmp_path):
    """The cached file's name carries the preset's digest: a definition changed under the same name (a layer
    added) writes a new file instead of reusing the old one."""
    from dataclasses import replace

    tiny = get_preset("tiny")
    assert preset_digest(tiny) == preset_digest(get_preset("tiny"))
    assert preset_digest(replace(tiny, n_layers=tiny.n_layers + 1)) != preset_digest(tiny)
    assert preset_digest(replace(tiny, nextn_predict_layers=1)) != preset_digest(tiny)
