"""ik_llama.cpp's worst-case graph (0.1.5, `src/llama-build-context.cpp`), which fuses where mainline does not:
its norms are one `FUSED_RMS_NORM` (norm and weight, a new tensor: not an in-place op in ik's ggml-alloc), a
dense FFN or shared expert one `FUSED_UP_GATE` [n_ff, n_tokens], the routed experts one `MOE_FUSED_UP_GATE`
[n_ff, n_expert_used, n_tokens] (the experts' gate/up biases inside it), the down product, its bias (`add_id`),
then `MUL_MULTI_ADD` (weights and sum) [n_embd, n_tokens]; the shared expert added after the routed output has
taken the residual. Attention: Q, K, V products first, then their biases and norms, rope, the K and V rows
copied into the cache (`cpy`, no row indices), flash attention or KQ/soft_max/KQV made contiguous. One mask
[n_kv, n_tokens] (f16 with flash attention) and, for gpt-oss and llama4, a second one of the same size for the
sliding-window / chunked layers (ik keeps the whole context on every layer). Every token is an output.

Seen in ik's `GGML_SCHED_DEBUG=2` dump of each tiny preset (docs/ENGINE_FLAGS.md, "Compute buffers").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.inspect import ModelInfo
from harness.plan.attention_graph import cache_bytes, layer_cells
from harness.plan.graph_alloc import Graph
from harness.plan.graph_ops import F16, F32, I32, Builder, Weights
from harness.plan.placement import CPU, Placement

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings

SECOND_MASK = ("gpt-oss", "llama4")   # ik builds KQ_mask_swa beside KQ_mask


def ik_norm(b: Builder, x: int, weight: str, n_elements: int) -> int:
    return b.op(n_elements * F32, x, weight=weight if b.w.has(weight) else None, name="fused_rms_norm " + weight)


def ik_reserve_graph(placement: Placement, model: ModelInfo, settings: "MemorySettings", n_tokens: int,
                     layer_attention) -> Graph:
    """The graph; `layer_attention(b, model, settings, p, il, x, kv_dev)` builds the layers that are not plain
    attention (latent attention, delta-net) and returns None for plain ones."""
    w = Weights(placement, model)
    b = Builder(Graph(), w, n_tokens, n_tokens)
    g, T, E = b.g, n_tokens, model.n_embd
    tokens = g.input(T * I32, CPU, "inp_tokens")
    inp = g.expand(g.add(E * T * F32, tokens, device=w.dev("token_embd.weight") or CPU, name="inp_embd"))
    b.input(T * I32, "pos")
    n_kv = settings.n_ctx
    b.input(n_kv * T * (F16 if settings.flash_attn else F32), "mask full")
    if model.architecture in SECOND_MASK:
        b.input(n_kv * T * (F16 if settings.flash_attn else F32), "mask swa")
    if model.attention.recurrent_layers:
        b.input(I32, "s_copy")
    out_ids = g.input(T * I32, CPU, "inp_out_ids")
    n_run = model.n_layers - model.nextn_predict_layers
    for il in range(n_run):
        p = f"blk.{il}."
        kv_dev = CPU if settings.kv_on_cpu else placement.layer_devices[il]
        residual = inp
        cur = ik_norm(b, inp, p + "attn_norm.weight", E * T)
        out = layer_attention(b, model, settings, p, il, cur, kv_dev)
        cur = out if out is not None else _attention(b, model, settings, p, il, cur, kv_dev)
        if il == n_run - 1:
            cur = g.add(E * T * F32, cur, out_ids, name="get_rows")
            residual = g.add(E * T * F32, residual, out_ids, name="get_rows")
        ffn_inp = g.add(E * T * F32, cur, residual, inplace=True, name="ffn_inp")
        norm_name = p + ("ffn_norm.weight" if w.has(p + "ffn_norm.weight") else "post_attention_norm.weight")
        x = ik_norm(b, ffn_inp, norm_name, E * T)
        inp = _ffn(b, model, p, x, ffn_inp)
    cur = ik_norm(b, inp, "output_norm.weight", E * T)
    out_name = "output.weight" if w.has("output.weight") else "token_embd.weight"
    logits = g.expand(g.add(model.vocab_size * T * F32, cur, device=w.dev(out_name), name="result_output"))
    g.nodes[logits].is_output = True
    return g


def _attention(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, il: int, x: int,
               kv_dev: str) -> int:
    g, T = b.g, b.T
    H, D, Dv, Hkv = model.n_head, model.head_dim_k, model.head_dim_v, model.n_head_kv
    n_kv = layer_cells(model, settings, il)
    q = b.op(b.w.rows(p + "attn_q.weight") * T * F32, x, weight=p + "attn_q.weight")
    k = b.op(b.w.rows(p + "attn_k.weight") * T * F32, x, weight=p + "attn_k.weight")
    v = b.op(b.w.rows(p + "attn_v.weight") * T * F32, x, weight=p + "attn_v.weight")
    g.expand(q), g.expand(k), g.expand(v)   # the products first, in this order (seen)
    q, k, v = (g.expand(b.op(b.nbytes(t), t, weight=p + f"attn_{m}.bias", inplace=True))
               if b.w.has(p + f"attn_{m}.bias") else t for t, m in ((q, "q"), (k, "k"), (v, "v")))
    gate = None
    if b.nbytes(q) == 2 * H * D * T * F32:   # qwen3next / qwen35moe: query and gate in one projection, the
        gate = g.view(q, name="gate")        # query made contiguous
        q = g.add(H * D * T * F32, g.view(q, name="q"), name="Qcur_cont")
    heads = []
    for cur, norm, n in ((q, "attn_q_norm.weight", H * D), (k, "attn_k_norm.weight", Hkv * D)):
        normed = b.w.has(p + norm)
        if normed:
            cur = ik_norm(b, g.view(cur, name="reshape"), p + norm, n * T)
        # rope reading the product's reshaped view makes a new tensor (seen: the RPC buffers of tiny-mixtral)
        heads.append(g.expand(g.add(n * T * F32, g.view(cur, name="reshape"), b.inputs["pos"], inplace=normed,
                                    name="rope")))
    q, k = heads
    k_cache = g.external(cache_bytes(n_kv, Hkv * D, settings.cache_type_k), kv_dev, "cache_k")
    v_cache = g.external(cache_bytes(n_kv, Hkv * Dv, settings.cache_type_v), kv_dev, "cache_v")
    g.expand(g.add(0, k, k_cache, device=kv_dev, name="cpy k"))
    g.expand(g.add(0, v, v_cache, device=kv_dev, name="cpy v"))
    swa = il in model.attention.swa_layers and model.architecture in SECOND_MASK
    mask = b.inputs["mask swa" if swa else "mask full"]
    k_view, v_view = g.view(k_cache, name="k"), g.view(v_cache, name="v")
    if settings.flash_attn:
        cur = g.add(Dv * H * T * F32, g.view(q, name="q"), k_view, v_view, mask, name="fa")
    else:
        if gate is not None:   # qwen3next / qwen35moe keep V untransposed: made contiguous transposed (seen)
            v_view = g.add(cache_bytes(n_kv, Hkv * Dv, settings.cache_type_v), v_view, name="v cont")
        kq = g.add(n_kv * T * H * F32, k_view, g.view(q, name="q"), name="kq")
        kq = g.add(n_kv * T * H * F32, kq, mask, inplace=True, name="kq_soft_max")
        kqv = g.add(Dv * T * H * F32, v_view, kq, name="kqv")
        cur = g.add(Dv * H * T * F32, g.view(kqv, name="permute"), name="kqv_merged_cont")
    if gate is not None:
        gate = b.unary(g.add(H * D * T * F32, gate, name="cont gate"), "sigmoid")
        cur = b.binary(cur, gate, "gated")
    out = b.op(model.n_embd * T * F32, g.view(cur, name="reshape"), weight=p + "attn_output.weight")
    if b.w.has(p + "attn_output.bias"):
        out = b.op(b.nbytes(out), out, weight=p + "attn_output.bias", inplace=True)
    return out


def _ffn(b: Builder, model: ModelInfo, p: str, x: int, residual: int) -> int:
    """The FFN and the residual: the layer's output."""
    g, T, E = b.g, b.T, model.n_embd
    if not b.w.has(p + "ffn_gate_inp.weight"):
        return g.add(E * T * F32, _up_gate_down(b, p, x, ""), residual, inplace=True, name="l_out")
    X, K = model.n_experts, model.n_experts_used
    F = b.w.rows(p + "ffn_up_exps.weight")
    logits = b.op(X * T * F32, x, weight=p + "ffn_gate_inp.weight", name="ffn_moe_logits")
    if b.w.has(p + "ffn_gate_inp.bias"):
        logits = b.op(X * T * F32, logits, weight=p + "ffn_gate_inp.bias", inplace=True)
    probs = b.unary(logits, "probs") if model.architecture != "gpt-oss" else logits
    select = probs
    if b.w.has(p + "exp_probs_b.bias"):
        select = b.op(X * T * F32, probs, weight=p + "exp_probs_b.bias", name="probs_biased")
    selected = g.view(g.add(X * T * I32, select, name="argsort"), name="top_k")
    weights = g.add(K * T * F32, g.view(probs, name="reshape"), selected, name="weights")
    if model.architecture not in ("llama4", "gpt-oss"):
        total = g.add(T * F32, weights, name="weights_sum")
        weights = g.add(K * T * F32, weights, total, inplace=True, name="weights_norm")
    cur = g.view(x, name="reshape")
    if model.architecture == "llama4":
        cur = g.add(E * K * T * F32, cur, name="repeat")
        cur = g.add(E * K * T * F32, cur, weights, inplace=True, name="ffn_moe_weighted")
    up_gate = g.add(F * K * T * F32, cur, selected, device=b.w.dev(p + "ffn_up_exps.weight"), name="moe_fused_up_gate")
    down = g.add(E * K * T * F32, up_gate, selected, device=b.w.dev(p + "ffn_down_exps.weight"), name="ffn_moe_down")
    if b.w.has(p + "ffn_down_exps.bias"):
        down = g.add(E * K * T * F32, down, selected, device=b.w.dev(p + "ffn_down_exps.bias"), inplace=True,
                     name="ffn_moe_down_biased")
    routed = g.add(E * T * F32, down, weights, name="mul_multi_add")
    routed = g.add(E * T * F32, routed, residual, inplace=True, name="routed_out_with_inp")
    if not b.w.has(p + "ffn_up_shexp.weight"):
        return routed
    shared = _up_gate_down(b, p, x, "_shexp")
    if b.w.has(p + "ffn_gate_inp_shexp.weight"):
        gate = b.unary(b.op(T * F32, x, weight=p + "ffn_gate_inp_shexp.weight", name="shared_expert_gate"),
                       "sigmoid")
        shared = b.binary(shared, gate, "ffn_shexp_gated")
    return g.add(E * T * F32, routed, shared, inplace=True, name="l_out")


def _up_gate_down(b: Builder, p: str, x: int, suffix: str) -> int:
    F = b.w.rows(f"{p}ffn_up{suffix}.weight")
    up_gate = b.op(F * b.T * F32, x, weight=f"{p}ffn_up{suffix}.weight", name="fused_up_gate")
    return b.op(b.w.rows(f"{p}ffn_down{suffix}.weight") * b.T * F32, up_gate, weight=f"{p}ffn_down{suffix}.weight")
