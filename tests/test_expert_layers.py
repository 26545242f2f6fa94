"""What a strategy's n counts on a model whose first layers are dense: the layers that have experts ("the first
N experts" = the experts of the first n MoE layers), and the native -ncmoe only where it places exactly that."""

from __future__ import annotations

import re

import pytest

from harness.models.inspect import inspect_preset
from harness.models.tensor_groups import TensorGroup
from harness.plan.flags import Target, compile_flags
from harness.plan.placement import CPU
from strategies import get_strategy

HELP = "-ngl N\n-ot, --override-tensor\n-cmoe, --cpu-moe\n-ncmoe, --n-cpu-moe N\n-dev, --device"


def _target(dialect: str) -> Target:
    return Target(dialect=dialect, tool="llama-bench", help_text=HELP, device="CUDA0", buffer_type="CUDA0")


def _ram_expert_layers(model, placement) -> list[int]:
    return sorted({t.layer for t in model.tensors
                   if t.group is TensorGroup.ROUTED_EXPERTS and placement.tensor_devices[t.name] == CPU})


@pytest.mark.parametrize("preset,first_moe", [("tiny-deepseek", 1), ("deepseek-v3", 3), ("tiny-glm", 1)])
def test_first_n_counts_layers_with_experts(preset, first_moe):
    model = inspect_preset(preset)
    assert model.moe_layers[0] == first_moe
    placement = get_strategy("first-n-experts").placement(model, {"n": 2})
    assert _ram_expert_layers(model, placement) == [first_moe, first_moe + 1]
    compiled = compile_flags(placement, model, _target("mainline"))
    # mainline's -ncmoe N selects the experts of layers 0..N-1: N = first_moe + 2 places exactly those
    assert compiled.native == ["-ncmoe", str(first_moe + 2)]
    ik = compile_flags(placement, model, _target("ik"))
    assert not ik.native and "-ot" in ik.args


def test_last_n_counts_layers_with_experts_and_needs_overrides():
    model = inspect_preset("tiny-deepseek")
    placement = get_strategy("last-n-experts").placement(model, {"n": 2})
    assert _ram_expert_layers(model, placement) == [4, 5]
    compiled = compile_flags(placement, model, _target("mainline"))
    assert not compiled.native
    pattern = compiled.args[compiled.args.index("-ot") + 1].rsplit("=", 1)[0]
    moved = {t.name for t in model.tensors if re.search(pattern, t.name)}
    assert moved == {t.name for t in model.tensors if placement.tensor_devices[t.name] == CPU} - {"token_embd.weight"}


def test_n_beyond_the_expert_layers_is_a_user_error():
    from harness.errors import UserError

    model = inspect_preset("tiny-deepseek")
    with pytest.raises(UserError, match="only 5 layers with experts"):
        get_strategy("first-n-experts").placement(model, {"n": 6})


def test_interleaved_moe_layers_count_only_the_layers_with_experts():
    model = inspect_preset("tiny-llama4")
    assert model.moe_layers == [1, 3, 5, 7]
    placement = get_strategy("first-n-experts").placement(model, {"n": 2})
    assert _ram_expert_layers(model, placement) == [1, 3]
    # -ncmoe 4 selects the experts of layers 0..3: exactly layers 1 and 3
    assert compile_flags(placement, model, _target("mainline")).native == ["-ncmoe", "4"]
    last = get_strategy("last-n-experts").placement(model, {"n": 3})
    assert _ram_expert_layers(model, last) == [3, 5, 7]
