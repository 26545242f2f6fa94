"""Strategies place exactly the intended tensors, and the compiled flags select exactly those tensors and no
other, for random model shapes (layer count, leading dense layers, shared experts, merged gate_up experts,
expert bias tensors), on both engines' real --help."""

from __future__ import annotations

import random
import re

import pytest

from harness.errors import UserError
from harness.models.inspect import TensorRecord, summarize
from harness.models.tensor_groups import ffn_matrix, layer_index
from harness.plan.flags import compile_flags
from harness.plan.targets import resolve_target
from harness.plan.placement import CPU
from strategies import available_strategies, get_strategy


def random_model(rng: random.Random):
    n_layers = rng.randint(2, 20)
    n_dense = rng.randint(0, min(3, n_layers - 1))
    shared = rng.random() < 0.5
    merged = rng.random() < 0.3
    bias = rng.random() < 0.3
    names = ["token_embd.weight", "output_norm.weight", "output.weight"]
    for i in range(n_layers):
        p = f"blk.{i}."
        names += [p + s for s in ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                                  "attn_output.weight", "ffn_norm.weight")]
        if i < n_dense:
            names += [p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight"]
            continue
        names += [p + "ffn_gate_inp.weight"]
        mats = ["gate_up", "down"] if merged else ["gate", "up", "down"]
        names += [p + f"ffn_{m}_exps.weight" for m in mats]
        if bias:
            names += [p + "exp_probs_b.bias"] + [p + f"ffn_{m}_exps.bias" for m in mats]
        if shared:
            names += [p + f"ffn_{m}_shexp.weight" for m in ("gate", "up", "down")]
    records = [TensorRecord(n, "F32", (4,), rng.randint(1, 1000) * 32) for n in names]
    meta = {"general.architecture": "qwen3moe", "qwen3moe.block_count": n_layers, "qwen3moe.expert_count": 8,
            "qwen3moe.expert_used_count": 2, "qwen3moe.leading_dense_block_count": n_dense}
    return summarize(records, meta)


def random_params(name: str, model, rng: random.Random) -> dict:
    n_moe = len(model.moe_layers)
    if name in ("first-n-experts", "last-n-experts"):
        return {"n": rng.randint(0, n_moe)}
    if name == "head-tail-experts":
        head = rng.randint(0, n_moe)
        return {"head": head, "tail": rng.randint(0, n_moe - head)}
    if name == "gpu-layers":
        return {"k": rng.randint(0, model.n_layers)}
    if name == "last-n-layers-cpu":
        return {"n": rng.randint(0, model.n_layers)}
    if name == "partial-experts":
        merged = any("gate_up_exps" in t.name for t in model.tensors)
        parts = rng.choice([["down"], ["gate_up"]] if merged else [["down"], ["gate", "up"], ["up"]])
        return {"n": rng.randint(0, n_moe), "parts": ",".join(parts), "side": rng.choice(["first", "last"])}
    if name == "custom":
        return {"overrides": rf"blk\.{rng.randint(0, model.n_layers - 1)}\.ffn_down=CPU;^output\.weight=CPU"}
    return {}


def expected_cpu(name: str, params: dict, model) -> set[str]:
    """What each strategy means, written independently of its implementation."""
    moe = model.moe_layers
    routed = {t.name for t in model.tensors if re.search(r"\.ffn_(gate_up|gate|up|down)_exps\.", t.name)}
    of_layers = lambda layers: {n for n in routed if layer_index(n) in set(layers)}  # noqa: E731
    base = {"token_embd.weight"}
    if name == "cpu-moe":
        return base | routed
    if name == "first-n-experts":
        return base | of_layers(moe[:params["n"]])
    if name == "last-n-experts":
        return base | of_layers(moe[len(moe) - params["n"]:])
    if name == "head-tail-experts":
        return base | of_layers(moe[:params["head"]] + moe[len(moe) - params["tail"]:])
    if name == "partial-experts":
        layers = moe[:params["n"]] if params["side"] == "first" else moe[len(moe) - params["n"]:]
        return base | {n for n in of_layers(layers) if ffn_matrix(n) in params["parts"].split(",")}
    if name == "gpu-layers":
        first_gpu = model.n_layers - params["k"]
        return base | {t.name for t in model.tensors
                       if layer_index(t.name) is not None and layer_index(t.name) < first_gpu}
    if name == "last-n-layers-cpu":
        first_cpu = model.n_layers - params["n"]
        return base | {t.name for t in model.tensors if layer_index(t.name) is not None
                       and layer_index(t.name) >= first_cpu}
    if name == "custom":
        layer = re.search(r"blk\\\.(\d+)", params["overrides"]).group(1)
        return base | {t.name for t in model.tensors if t.name.startswith(f"blk.{layer}.ffn_down")} | {"output.weight"}
    return base


# the regexes the engines' own flags generate (mainline common/common.h, ik common/common.cpp)
NATIVE = {
    "mainline": (r"blk\.{i}\.ffn_(up|down|gate|gate_up)_(ch|)exps", r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"),
}


def simulate_engine(args: list[str], names: list[str], dialect: str, n_layers: int, layer_devices) -> set[str]:
    """Apply the compiled arguments the way the engine does: layers by -ngl, then overrides, first match wins."""
    ngl = int(args[args.index("-ngl") + 1])
    first_gpu = n_layers + 1 - ngl if dialect == "mainline" else n_layers - ngl
    rules: list[tuple[str, str]] = []
    if "-cmoe" in args:
        rules.append((NATIVE[dialect][1], "CPU"))
    if "-ncmoe" in args:
        rules += [(NATIVE[dialect][0].format(i=i), "CPU") for i in range(int(args[args.index("-ncmoe") + 1]))]
    if "-ot" in args:
        for rule in re.split(r"[;,]", args[args.index("-ot") + 1]):
            pattern, buft = rule.rsplit("=", 1)
            rules.append((pattern, buft))
    on_cpu = set()
    for name in names:
        layer = layer_index(name)
        device = "CPU" if name == "token_embd.weight" else (
            "CPU" if (layer if layer is not None else n_layers) < first_gpu else "ACCEL")
        for pattern, buft in rules:
            if re.search(pattern, name):
                device = "CPU" if buft == "CPU" else "ACCEL"
                break
        if device == "CPU":
            on_cpu.add(name)
    return on_cpu


@pytest.fixture(scope="module")
def targets(mainline_engine, ik_engine):
    """Both engines' real binaries as targets, the accelerator named (never contacted): an RPC device for
    mainline, a CUDA device for ik (whose -ngl cannot place weights on RPC devices)."""
    return [resolve_target(engine, tool, "RPC0[127.0.0.1:50052]" if engine.dialect == "mainline" else "CUDA0")
            for engine in (mainline_engine, ik_engine) for tool in engine.tools]


def test_random_shapes_place_and_compile_exactly(targets):
    rng = random.Random(20261128)
    checked = 0
    for _ in range(60):
        model = random_model(rng)
        names = [t.name for t in model.tensors]
        for name in available_strategies():
            if name == "engine-fit":
                continue
            params = random_params(name, model, rng)
            placement = get_strategy(name).placement(model, params)
            cpu = set(placement.tensors_on(CPU))
            assert cpu == expected_cpu(name, params, model), (name, params)
            for target in targets:
                try:
                    args = compile_flags(placement, model, target).args
                except UserError as exc:  # only ik cannot split layers with the output layer offloaded
                    assert name == "gpu-layers" and target.dialect == "ik", exc
                    continue
                simulated = simulate_engine(args, names, target.dialect, model.n_layers, placement.layer_devices)
                assert simulated == cpu, (name, params, target.dialect, target.tool, args)
                checked += 1
    assert checked > 1800


def test_native_flags_used_only_where_exact(targets):
    rng = random.Random(7)
    model = random_model(rng)
    while model.n_leading_dense_layers == 0 or any("gate_up" in t.name for t in model.tensors):
        model = random_model(rng)
    mainline_server = next(t for t in targets if t.dialect == "mainline" and t.tool == "llama-server")
    ik_server = next(t for t in targets if t.dialect == "ik" and t.tool == "llama-server")
    first2 = get_strategy("first-n-experts").placement(model, {"n": 2})
    args = compile_flags(first2, model, mainline_server).args
    # first 2 expert layers sit after the dense ones: -ncmoe counts all layers
    assert args[args.index("-ncmoe") + 1] == str(model.n_leading_dense_layers + 2)
    assert "-ncmoe" not in compile_flags(first2, model, ik_server).args  # ik's server reads it as last-N
    assert "-cmoe" in compile_flags(get_strategy("cpu-moe").placement(model, {}), model, mainline_server).args


def test_custom_applies_patterns_as_the_engines_do():
    """regex search, not full match: `output\\.weight` also catches every blk.N.attn_output.weight."""
    model = random_model(random.Random(3))
    cpu = set(get_strategy("custom").placement(model, {"overrides": r"output\.weight=CPU"}).tensors_on(CPU))
    attn_out = {t.name for t in model.tensors if t.name.endswith("attn_output.weight")}
    assert cpu == {"token_embd.weight", "output.weight"} | attn_out


def test_strategy_parameter_errors_are_one_line():
    with pytest.raises(UserError, match="unknown parameter 'nn' \\(did you mean 'n'\\?\\)"):
        get_strategy("first-n-experts").parse_params({"nn": 3})
    with pytest.raises(UserError, match="did you mean 'cpu-moe'"):
        get_strategy("cpu-mo")
    model = random_model(random.Random(1))
    with pytest.raises(UserError, match="layers with experts"):
        get_strategy("last-n-experts").placement(model, {"n": 99})
