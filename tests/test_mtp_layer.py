"""The NextN/MTP layer of a GLM-4.5 file (tiny-glm-mtp: block 6 of 7, `nextn_predict_layers` 1) as moebench
sees it and as both engines load it: shown as an MTP layer, not counted among the expert layers a strategy's n
counts, and skipped whole by each engine (every one of its tensors, and nothing else, in the engine's "model has
unused tensor" lines), which only ik's `-mtp` loads and caches. Its model buffer and KV cache are checked in test_placement_reality.py and
test_cache_reality.py; docs/ENGINE_FLAGS.md, "NextN/MTP layers", has the engine code."""

from __future__ import annotations

import re

import pytest

from harness.models import inspect_model, synthetic_model
from harness.models.report import render_model_info
from harness.plan.load_report import parse_report
from harness.plan.placement import loaded_tensors
from harness.tools.server_process import LlamaServer
from strategies import get_strategy

_UNUSED = re.compile(r"model has unused tensor (\S+) \(size")
MTP_LAYER = 6


@pytest.fixture(scope="module")
def model():
    return inspect_model(synthetic_model("tiny-glm-mtp"))


def test_inventory_shows_the_mtp_layer(model):
    assert model.n_layers == 7 and model.nextn_predict_layers == 1
    assert [layer.index for layer in model.layers if layer.is_mtp] == [MTP_LAYER]
    mtp_names = {t.name for t in model.tensors if t.name.startswith(f"blk.{MTP_LAYER}.")}
    assert {f"blk.{MTP_LAYER}.nextn.{n}.weight" for n in ("eh_proj", "enorm", "hnorm", "shared_head_norm")} \
        <= mtp_names
    assert f"blk.{MTP_LAYER}.ffn_up_exps.weight" in mtp_names  # a full MoE block
    assert model.moe_layers == [1, 2, 3, 4, 5]  # the expert layers that run
    text = render_model_info(model)
    assert "5 with experts, 1 MTP" in text and f"{MTP_LAYER} (mtp)" in text
    assert "2.05 MiB in the MTP layer, which the engines skip" in text


@pytest.mark.parametrize("strategy,params,layers", [
    ("last-n-experts", {"n": 1}, {5}), ("first-n-experts", {"n": 5}, {1, 2, 3, 4, 5}),
    ("head-tail-experts", {"head": 1, "tail": 1}, {1, 5}), ("cpu-moe", {}, {1, 2, 3, 4, 5})])
def test_strategies_count_the_expert_layers_that_run(model, strategy, params, layers):
    placement = get_strategy(strategy).placement(model, params)
    on_cpu = {int(name.split(".")[1]) for name, device in placement.tensor_devices.items()
              if device == "cpu" and "_exps" in name}
    assert on_cpu == layers
    assert all(f"blk.{MTP_LAYER}." not in name for name in placement.tensor_devices)


def test_last_n_experts_refuses_more_than_the_running_layers(model):
    with pytest.raises(Exception, match="only 5 layers with experts"):
        get_strategy("last-n-experts").placement(model, {"n": 6})


def test_each_engine_skips_exactly_the_mtp_layer(engine, model, tmp_path):
    log = tmp_path / "server.log"
    with LlamaServer(engine.tool("llama-server"), synthetic_model("tiny-glm-mtp"),
                     ["-c", "256", "-np", "1", "-ngl", "0", "-t", "2"], log_path=log):
        pass
    skipped = set(_UNUSED.findall(log.read_text(errors="replace")))
    loaded = {t.name for t in loaded_tensors(model)}
    assert skipped == {t.name for t in model.tensors} - loaded
    assert skipped and all(name.startswith(f"blk.{MTP_LAYER}.") for name in skipped)


def test_ik_loads_and_caches_the_mtp_layer_only_with_mtp(ik_engine, model, tmp_path):
    """ik's `-mtp` (which moebench never passes) loads the block and gives it a cache: 7 layers' KV, not 6
    (docs/ENGINE_FLAGS.md §13)."""
    kv = {}
    for args in ([], ["-mtp"]):
        log = tmp_path / f"server{''.join(args)}.log"
        with LlamaServer(ik_engine.tool("llama-server"), synthetic_model("tiny-glm-mtp"),
                         ["-c", "4096", "-np", "1", "-ngl", "0", "-t", "2", *args], log_path=log):
            pass
        text = log.read_text(errors="replace")
        kv[bool(args)] = sum(parse_report(text).kv_bytes_by_device.values())
        assert bool(_UNUSED.findall(text)) is not bool(args)
    running = model.n_layers - model.nextn_predict_layers
    assert kv[True] * running == kv[False] * model.n_layers
