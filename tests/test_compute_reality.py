"""The compute buffer moebench predicts for each kind of layer equals what each engine reserves: llama-server
loads a tiny model of that kind everything on the CPU and prints its `compute buffer size` line; the prediction
(`harness.plan.reserve_graph` sized by `harness.plan.graph_alloc`) must be within 10% of it and never under by
more than 5% (an under-prediction is an OOM on a real card)."""

from __future__ import annotations

import pytest

from harness.models import inspect_model, synthetic_model
from harness.plan.load_report import parse_report
from harness.plan.memory import MemorySettings, padded_context, predict_memory
from harness.plan.placement import CPU, build_placement
from harness.tools.server_process import LlamaServer
from harness.units import MIB

UNDER, OVER = 0.95, 1.10

# (layer kind, preset, context, micro-batch, flash attention, cache type)
CASES = [
    ("attention", "tiny", 4096, 512, True, "q8_0"),
    ("attention without flash attention", "tiny", 512, 512, False, "f16"),
    ("attention with biases and sinks, sliding window", "tiny-gpt-oss", 512, 512, True, "f16"),
    ("sliding window without flash attention", "tiny-gpt-oss", 16384, 512, False, "f16"),
    ("chunked attention, interleaved MoE", "tiny-llama4", 16384, 512, True, "f16"),
    ("latent attention", "tiny-deepseek", 4096, 512, True, "f16"),
    ("latent attention without flash attention", "tiny-deepseek", 4096, 512, False, "f16"),
    ("gated delta-net", "tiny-qwen3next", 4096, 512, True, "f16"),
    ("gated delta-net without flash attention", "tiny-qwen35moe", 512, 512, False, "f16"),
    ("merged experts (mixtral)", "tiny-mixtral", 4096, 256, True, "f16"),
]


# ik only: (what, preset, context, micro-batch, flash attention, -mla, -amb MiB); tiny-deepseek's decompressed
# cache is 2 MiB per 4096 cells, KQ 8 MiB per 4096 cells and 512 tokens
IK_MLA_CASES = [
    ("-mla 1", 4096, 512, True, 1, 0),
    ("-mla 1 without flash attention (transposed V cache)", 4096, 512, False, 1, 0),
    ("-mla 2", 4096, 512, True, 2, 0),
    ("-mla 2 without flash attention", 4096, 512, False, 2, 0),
    ("-mla 3 below pp_opt (absorbed path)", 4096, 64, True, 3, 0),
    ("-mla 2 below pp_opt", 4096, 64, False, 2, 0),
    ("-mla 3 -amb 1 (decompressed in steps)", 4096, 512, True, 3, 1),
    ("-mla 3 -amb 4 without flash attention (KQ in steps)", 4096, 512, False, 3, 4),
    ("-mla 1 -amb 2 without flash attention", 4096, 512, False, 1, 2),
]


def _reported_and_predicted(engine, preset, n_ctx, n_ubatch, flash_attn, cache_type, log_path, mla_mode=None,
                            amb_mib=0) -> tuple[int, int]:
    path = synthetic_model(preset)
    model = inspect_model(path)
    on_off = ("on" if flash_attn else "off") if engine.dialect == "mainline" else ("1" if flash_attn else "0")
    argv = ["-c", str(n_ctx), "-np", "1", "-ngl", "0", "-t", "2", "-fa", on_off, "-ub", str(n_ubatch),
            "-ctk", cache_type, "-ctv", cache_type, *(["-lv", "4"] if engine.dialect == "mainline" else []),
            *(["-mla", str(mla_mode)] if mla_mode is not None else []), *(["-amb", str(amb_mib)] if amb_mib else [])]
    with LlamaServer(engine.tool("llama-server"), path, argv, log_path=log_path):
        pass
    report = parse_report(log_path.read_text(errors="replace"))
    assert report is not None, f"no load report in {log_path}"
    padded = padded_context(n_ctx, engine.dialect, flash_attn)
    settings = MemorySettings(n_ctx=padded, n_ubatch=min(n_ubatch, padded if engine.dialect == "ik" else n_ctx),
                              flash_attn=flash_attn, cache_type_k=cache_type, cache_type_v=cache_type,
                              dialect=engine.dialect, n_outputs_max=None if engine.dialect == "ik" else 1,
                              mla_mode=mla_mode, attn_max_batch_mib=amb_mib)
    cpu = build_placement("cpu", {}, model, layer_devices=[CPU] * model.n_layers, output_device=CPU)
    return report.compute_bytes_by_device["CPU"], predict_memory(cpu, model, settings).compute_bytes[CPU]


@pytest.mark.parametrize("kind,preset,n_ctx,n_ubatch,flash_attn,cache_type", CASES, ids=[c[0] for c in CASES])
def test_compute_buffer_of_each_layer_kind(engine, tmp_path, kind, preset, n_ctx, n_ubatch, flash_attn,
                                           cache_type):
    actual, predicted = _reported_and_predicted(engine, preset, n_ctx, n_ubatch, flash_attn, cache_type,
                                                tmp_path / "server.log")
    assert UNDER <= predicted / actual <= OVER, \
        f"{kind}: predicted {predicted / MIB:.2f} MiB, {engine.dialect} reserved {actual / MIB:.2f} MiB"


@pytest.mark.parametrize("what,n_ctx,n_ubatch,flash_attn,mla_mode,amb_mib", IK_MLA_CASES,
                         ids=[c[0] for c in IK_MLA_CASES])
def test_ik_latent_attention_modes(ik_engine, tmp_path, what, n_ctx, n_ubatch, flash_attn, mla_mode, amb_mib):
    actual, predicted = _reported_and_predicted(ik_engine, "tiny-deepseek", n_ctx, n_ubatch, flash_attn, "f16",
                                                tmp_path / "server.log", mla_mode, amb_mib)
    assert UNDER <= predicted / actual <= OVER, \
        f"{what}: predicted {predicted / MIB:.2f} MiB, ik reserved {actual / MIB:.2f} MiB"
