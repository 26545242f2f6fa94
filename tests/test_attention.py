"""What each architecture caches (harness.models.attention), per engine, against the engines' own reports.

The byte figures marked "reported" are what mainline b11434 printed (`llama_kv_cache: CPU KV buffer size`,
`llama_memory_recurrent: CPU RS buffer size`) for the tiny presets with `llama-server -c 4096 -np 1`;
tests/test_cache_reality.py checks the same on both engines live."""

from __future__ import annotations

import pytest

from harness.models.attention import AttentionShape, cache_cells, kv_bytes_of_layer
from harness.models.inspect import inspect_preset
from harness.plan.memory import MemorySettings, cache_type_bytes, kv_bytes_of, predict_memory
from harness.units import GIB, MIB
from strategies import get_strategy


def _kv_total(model, settings) -> int:
    return sum(kv_bytes_of(model, settings, i) for i in range(model.n_layers - model.nextn_predict_layers))


def test_mla_caches_the_latent_on_both_engines():
    model = inspect_preset("tiny-deepseek")
    assert model.attention.is_mla and model.attention.latent_width == 576
    for dialect in ("mainline", "ik"):
        settings = MemorySettings(n_ctx=4096, dialect=dialect)
        assert _kv_total(model, settings) == 27 * MIB  # reported: CPU KV buffer size = 27.00 MiB


def test_deepseek_v3_at_32k_is_about_two_gib_not_150():
    model = inspect_preset("deepseek-v3")
    kv = _kv_total(model, MemorySettings(n_ctx=32768))
    assert kv == 61 * 32768 * 576 * 2
    assert 2 * GIB < kv < 2.2 * GIB


def test_mla_without_flash_attention_on_ik_adds_the_transposed_v_in_mode_1():
    model = inspect_preset("tiny-deepseek")  # no fused attn_kv_b: ik computes it and keeps the mode
    with_fa = MemorySettings(n_ctx=4096, dialect="ik", cache_type_k="q8_0")
    mode_1 = MemorySettings(n_ctx=4096, dialect="ik", flash_attn=False, cache_type_k="q8_0", mla_mode=1)
    mode_3 = MemorySettings(n_ctx=4096, dialect="ik", flash_attn=False, cache_type_k="q8_0", mla_mode=3)
    mode_0 = MemorySettings(n_ctx=4096, dialect="ik", flash_attn=False, cache_type_k="q8_0", mla_mode=0)
    per_layer = 4096 * 576 * cache_type_bytes("q8_0")
    assert kv_bytes_of(model, with_fa, 1) == int(per_layer)
    assert kv_bytes_of(model, mode_1, 1) == int(per_layer + 4096 * 512 * 2)
    assert kv_bytes_of(model, mode_3, 1) == 4096 * 576 * 2  # the latent in -ctv (reported: 27.00 MiB at f16)
    assert kv_bytes_of(model, mode_0, 1) == kv_bytes_of(model, mode_1, 1)  # -mla 0 needs attn_kv_b: 1


def test_older_mla_conversions_are_full_attention_to_mainline_and_latent_to_ik():
    legacy = AttentionShape(n_layers=61, n_head=128, n_head_kv=128, head_dim_k=192, head_dim_v=128,
                            kv_lora_rank=512, q_lora_rank=1536, rope_dim=64, has_fused_kv_b=True)
    mainline = MemorySettings(n_ctx=32768, dialect="mainline")
    assert kv_bytes_of_layer(legacy, 0, mainline, cache_type_bytes) == 32768 * 128 * (192 + 128) * 2
    for mode, flash, width_type in ((3, True, "f16"), (2, False, "q8_0"), (1, True, "f16")):
        ik = MemorySettings(n_ctx=32768, dialect="ik", mla_mode=mode, flash_attn=flash, cache_type_v="q8_0")
        expected = 32768 * 576 * cache_type_bytes(width_type)
        assert kv_bytes_of_layer(legacy, 0, ik, cache_type_bytes) == int(expected), mode
    ik_off = MemorySettings(n_ctx=32768, dialect="ik", mla_mode=0)
    assert kv_bytes_of_layer(legacy, 0, ik_off, cache_type_bytes) == 32768 * 128 * (192 + 128) * 2


def test_sliding_window_layers_keep_window_plus_ubatch_cells_on_mainline_only():
    model = inspect_preset("tiny-gpt-oss")
    assert model.attention.swa_layers == (0, 2, 4)
    mainline = MemorySettings(n_ctx=4096, dialect="mainline")
    assert cache_cells(model.attention, 0, mainline) == 768  # pad256(128 + 512): reported "size = 768 cells"
    assert cache_cells(model.attention, 1, mainline) == 4096
    # reported: 6.00 MiB (non-SWA) + 1.12 MiB (SWA)
    assert _kv_total(model, mainline) == 6 * MIB + 3 * 768 * 512
    assert _kv_total(model, MemorySettings(n_ctx=4096, dialect="mainline", swa_full=True)) == 12 * MIB
    assert _kv_total(model, MemorySettings(n_ctx=4096, dialect="ik")) == 12 * MIB  # ik: no SWA cache
    small = MemorySettings(n_ctx=256, dialect="mainline")
    assert cache_cells(model.attention, 0, small) == 256  # never more than the context


def test_gpt_oss_120b_swa_halves_the_cache_at_long_context():
    model = inspect_preset("gpt-oss-120b")
    full = _kv_total(model, MemorySettings(n_ctx=131072, dialect="ik"))
    swa = _kv_total(model, MemorySettings(n_ctx=131072, dialect="mainline"))
    assert full == 36 * 131072 * 8 * 64 * 2 * 2
    assert swa == 18 * 131072 * 2048 + 18 * 768 * 2048


def test_recurrent_layers_keep_a_state_not_a_kv_cache():
    model = inspect_preset("tiny-qwen3next")
    assert model.attention.recurrent_layers == (0, 1, 2, 4, 5, 6)
    settings = MemorySettings(n_ctx=4096)
    assert _kv_total(model, settings) == 4 * MIB  # reported: CPU KV buffer size = 4.00 MiB
    placement = get_strategy("all-gpu").placement(model, {})
    memory = predict_memory(placement, model, settings)
    state = sum(memory.state_bytes.values())
    # reported: RS buffer size = 0.11 MiB; R (f32) 0.02 MiB, S (f32) 0.09 MiB over the 6 recurrent layers
    assert state == 6 * 4 * (3 * (128 + 2 * 2 * 32) + 32 * 128)
    assert round(state / MIB, 2) == 0.11


def test_qwen3_next_state_is_the_same_on_both_engines():
    model = inspect_preset("qwen3-next-80b-a3b")
    for dialect in ("mainline", "ik"):
        elements = model.attention.recurrent_state_elements(dialect)
        assert elements == 3 * (4096 + 2 * 16 * 128) + 128 * 4096


@pytest.mark.parametrize("name", ["tiny", "tiny-glm", "qwen3-30b-a3b", "glm-4.5-air"])
def test_ordinary_attention_is_unchanged(name):
    model = inspect_preset(name)
    settings = MemorySettings(n_ctx=8192, cache_type_k="q8_0", cache_type_v="q4_0")
    per_layer = int(8192 * model.n_head_kv * (model.head_dim_k * cache_type_bytes("q8_0")
                                              + model.head_dim_v * cache_type_bytes("q4_0")))
    assert all(kv_bytes_of(model, settings, i) == per_layer for i in range(model.n_layers))


def test_llama4_chunked_attention_keeps_the_chunk_plus_ubatch_on_mainline():
    model = inspect_preset("llama-4-scout")
    assert model.attention.sliding_window == 8192 and len(model.attention.swa_layers) == 36
    mainline = MemorySettings(n_ctx=131072, dialect="mainline")
    assert cache_cells(model.attention, 0, mainline) == 8704 and cache_cells(model.attention, 3, mainline) == 131072
    per_cell = 8 * 128 * 2 * 2
    assert _kv_total(model, mainline) == (12 * 131072 + 36 * 8704) * per_cell
    assert _kv_total(model, MemorySettings(n_ctx=131072, dialect="ik")) == 48 * 131072 * per_cell
    tiny = inspect_preset("tiny-llama4")  # reported at 4096: 4.00 MiB (full) + 12.00 MiB (chunked, 4096 cells)
    assert _kv_total(tiny, MemorySettings(n_ctx=4096)) == 16 * MIB


def test_generation_reads_the_latent_and_at_most_the_window():
    from harness.perf.workload import Layout, _kv_read_bytes

    deepseek = inspect_preset("deepseek-v3")
    layout = Layout(get_strategy("all-gpu").placement(deepseek, {}))
    assert _kv_read_bytes(deepseek, layout, 5, 10_000) == 576 * 2 * 10_000
    oss = inspect_preset("gpt-oss-120b")
    layout = Layout(get_strategy("all-gpu").placement(oss, {}))
    assert _kv_read_bytes(oss, layout, 0, 10_000) == 8 * 64 * 2 * 2 * 128   # a sliding-window layer
    assert _kv_read_bytes(oss, layout, 1, 10_000) == 8 * 64 * 2 * 2 * 10_000


def test_recurrent_layers_from_the_files_flags_or_the_interval():
    from harness.models.attention import recurrent_layers_of

    assert recurrent_layers_of("qwen3next", {}, 8) == (0, 1, 2, 4, 5, 6)
    assert recurrent_layers_of("qwen35moe", {"qwen35moe.full_attention_interval": 2}, 6) == (0, 2, 4)
    flags = {"qwen3next.attention.recurrent_layers": [True, False, True, True]}
    assert recurrent_layers_of("qwen3next", flags, 4) == (0, 2, 3)
    assert recurrent_layers_of("qwen3moe", {}, 8) == ()
