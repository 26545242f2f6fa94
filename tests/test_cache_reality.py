"""The KV cache (and recurrent state) moebench predicts for each tiny architecture equals what each engine
allocates: llama-server loads the model at a 4096-token context and prints its `KV buffer size` lines (mainline
also `RS buffer size`: the recurrent state, which ik keeps inside its KV buffer)."""

from __future__ import annotations

import re

import pytest

from harness.models import inspect_model, synthetic_model
from harness.plan.load_report import parse_report
from harness.plan.memory import MemorySettings, kv_bytes_by_device, state_bytes_by_device
from harness.tools.server_process import LlamaServer
from harness.units import MIB
from strategies import get_strategy

_RS_BUFFER = re.compile(r"(\S+) RS buffer size =\s*([\d.]+) MiB")

# (preset, extra engine arguments, the MemorySettings fields they set), per engine where they differ
CASES = [
    ("tiny", [], {}),
    ("tiny-glm", ["-ctk", "q8_0", "-ctv", "q8_0"], {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}),
    ("tiny-glm-mtp", [], {}),  # the NextN/MTP layer gets no cache on either engine (MTP off)
    ("tiny-deepseek", [], {}),
    ("tiny-deepseek", ["-fa", "off"], {"flash_attn": False}),
    # mainline refuses different K and V types on MLA ("model does not support different K and V cache types")
    ("tiny-deepseek", ["-ctk", "q8_0", "-ctv", "q8_0"], {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}),
    ("tiny-gpt-oss", [], {}),
    ("tiny-gpt-oss", ["-ub", "256"], {"n_ubatch": 256}),
    ("tiny-qwen3next", [], {}),
    ("tiny-qwen35moe", [], {}),
    ("tiny-llama4", [], {}),
    ("tiny-minimax-m2", [], {}),
    ("tiny-ernie", [], {}),
    ("tiny-mixtral", ["-ctk", "q8_0", "-ctv", "q8_0"], {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}),
]
MAINLINE_ONLY = [("tiny-gpt-oss", ["--swa-full"], {"swa_full": True})]
IK_ONLY = [("tiny-deepseek", ["-mla", "1", "-fa", "off"], {"mla_mode": 1, "flash_attn": False}),
           ("tiny-deepseek", ["-mla", "2", "-fa", "off"], {"mla_mode": 2, "flash_attn": False})]
N_CTX = 4096


def _reported(engine, preset, args, log_path) -> tuple[int, int, str]:
    """(KV bytes, RS bytes, the log) the engine reports for the preset at N_CTX, everything on the CPU."""
    model_path = synthetic_model(preset)
    log_args = ["-lv", "4"] if engine.dialect == "mainline" else []  # mainline's server logs them at level 4
    argv = ["-c", str(N_CTX), "-np", "1", "-ngl", "0", "-t", "2", *log_args, *args]
    with LlamaServer(engine.tool("llama-server"), model_path, argv, log_path=log_path):
        pass
    text = log_path.read_text(errors="replace")
    report = parse_report(text)
    assert report is not None, f"no load report in {log_path}"
    rs = sum(round(float(m[2]) * MIB) for m in _RS_BUFFER.finditer(text))
    return sum(report.kv_bytes_by_device.values()), rs, text


def _predicted(engine, preset, fields) -> tuple[int, int]:
    model = inspect_model(synthetic_model(preset))
    settings = MemorySettings(n_ctx=N_CTX, dialect=engine.dialect, **fields)
    placement = get_strategy("gpu-layers").placement(model, {"k": 0})  # every layer's cache, MTP layers' none
    kv = sum(kv_bytes_by_device(placement, model, settings).values())
    state = sum(state_bytes_by_device(placement, model, settings).values())
    return kv, state


def _same_mib(a: int, b: int) -> bool:
    return abs(a / MIB - b / MIB) <= 0.011  # the engines print two decimals


@pytest.mark.parametrize("preset,args,fields", CASES + MAINLINE_ONLY + IK_ONLY,
                         ids=[f"{p}{''.join(a)}" for p, a, _ in CASES + MAINLINE_ONLY + IK_ONLY])
def test_predicted_cache_equals_the_engines(engine, tmp_path, preset, args, fields):
    if (preset, args, fields) in MAINLINE_ONLY and engine.dialect != "mainline":
        pytest.skip("a mainline flag")
    if (preset, args, fields) in IK_ONLY and engine.dialect != "ik":
        pytest.skip("an ik flag")
    kv, rs, text = _reported(engine, preset, args, tmp_path / "server.log")
    predicted_kv, predicted_state = _predicted(engine, preset, fields)
    if engine.dialect == "ik":  # ik keeps the recurrent state in its KV buffer
        assert _same_mib(predicted_kv + predicted_state, kv), (predicted_kv, predicted_state, kv, tmp_path)
    else:
        assert _same_mib(predicted_kv, kv), (predicted_kv, kv, tmp_path)
        assert _same_mib(predicted_state, rs), (predicted_state, rs, tmp_path)
