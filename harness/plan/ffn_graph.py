"""The feed-forward part of a layer in the reserve graph: routed experts (`llm_graph_context::build_moe_ffn`),
shared experts beside them (gated by a sigmoid of one row per token in qwen3next / qwen35moe), or a dense FFN
(`build_ffn`).

The MoE path (mainline src/llama-graph.cpp; ik's `llm_build_moe_ffn` builds the same tensors): the router
logits [n_expert, n_tokens] (+ its bias: gpt-oss), soft_max or sigmoid (gpt-oss: the logits themselves, soft_max
over the selected ones), the selection bias (`exp_probs_b`), argsort top-k, the weights [n_expert_used, n_tokens]
(normalized: sum, clamp, div), llama4 multiplies the repeated input [n_embd, n_expert_used, n_tokens] by them
before the experts; the up and gate products [n_ff, n_expert_used, n_tokens] (+ the experts' biases, add_id,
in place), the GLU, the down product [n_embd, n_expert_used, n_tokens] (+ bias) times the weights, and the sum
of its n_expert_used views (one expert: a contiguous copy).
"""

from __future__ import annotations

from harness.plan.graph_ops import F32, I32, Builder


def ffn(b: Builder, p: str, x: int, n_embd: int, n_experts: int, n_used: int, arch: str) -> int:
    """The layer's FFN output [n_embd, n_tokens] from its normed input `x`."""
    if b.w.has(p + "ffn_gate_inp.weight"):
        out = moe(b, p, x, n_embd, n_experts, n_used, arch)
        if b.w.has(p + "ffn_up_shexp.weight"):
            shared = dense(b, p, x, "_shexp")
            if b.w.has(p + "ffn_gate_inp_shexp.weight"):   # qwen3next / qwen35moe: a sigmoid gate per token
                gate = b.op(b.T * F32, x, weight=p + "ffn_gate_inp_shexp.weight", name="shared_expert_gate")
                gate = b.unary(gate, "sigmoid")
                shared = b.binary(shared, gate, "ffn_shexp_gated")
            out = b.binary(out, shared, "ffn_out")
        return out
    return dense(b, p, x, "")


def dense(b: Builder, p: str, x: int, suffix: str) -> int:
    up = b.matmul(f"{p}ffn_up{suffix}.weight", x)
    gate = b.matmul(f"{p}ffn_gate{suffix}.weight", x)
    act = b.g.add(b.nbytes(up), gate, up, name="swiglu")
    return b.matmul(f"{p}ffn_down{suffix}.weight", act)


def moe(b: Builder, p: str, x: int, E: int, X: int, K: int, arch: str) -> int:
    g, T = b.g, b.T
    F = b.w.rows(p + "ffn_up_exps.weight")
    logits = b.matmul(p + "ffn_gate_inp.weight", x)        # + ffn_gate_inp.bias (gpt-oss), in place
    softmax_weight = arch == "gpt-oss"                       # LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX_WEIGHT
    probs = logits if softmax_weight else b.unary(logits, "probs")   # soft_max or sigmoid
    select = probs
    if b.w.has(p + "exp_probs_b.bias"):
        select = b.op(X * T * F32, probs, weight=p + "exp_probs_b.bias", name="selection_probs")
    if arch == "llama4":
        select = logits
    top = g.add(X * T * I32, select, name="argsort")
    selected = g.view(top, name="top_k")
    weights = g.add(K * T * F32, g.view(probs, name="reshape"), selected, name="weights")
    if softmax_weight:
        weights = b.unary(g.view(weights, name="reshape"), "weights_softmax")
    if arch not in ("llama4", "gpt-oss"):   # norm_w: the weights over their sum (clamped)
        total = g.add(T * F32, weights, name="weights_sum")
        total = g.add(T * F32, total, inplace=True, name="weights_sum_clamped")
        weights = g.add(K * T * F32, weights, total, inplace=True, name="weights_norm")
    weights = g.expand(weights)
    cur = g.view(x, name="reshape")
    if arch == "llama4":   # weight_before_ffn: the input repeated per selected expert, times its weight
        cur = g.add(E * K * T * F32, cur, name="repeat")
        cur = g.add(E * K * T * F32, cur, weights, inplace=True, name="ffn_moe_weighted_input")
    up = _expert_product(b, p + "ffn_up_exps", F * K * T * F32, cur, selected)
    gate = _expert_product(b, p + "ffn_gate_exps", F * K * T * F32, cur, selected)
    act = g.add(F * K * T * F32, gate, up, name="ffn_moe_glu")
    down = _expert_product(b, p + "ffn_down_exps", E * K * T * F32, act, selected)
    if arch != "llama4":
        down = g.add(E * K * T * F32, down, weights, inplace=True, name="ffn_moe_weighted")
    down = g.expand(down)
    views = [g.expand(g.view(down, name=f"expert {i}")) for i in range(K)]
    out = views[0]
    for view in views[1:]:
        out = g.expand(g.add(E * T * F32, out, view, inplace=True, name="ffn_moe_out"))
    if K == 1:
        out = g.add(E * T * F32, out, name="cont")
    return out


def _expert_product(b: Builder, name: str, n_bytes: int, x: int, selected: int) -> int:
    out = b.g.add(n_bytes, x, selected, device=b.w.dev(name + ".weight"), name=name)
    if b.w.has(name + ".bias"):   # add_id, in place
        out = b.g.add(n_bytes, out, selected, device=b.w.dev(name + ".bias"), inplace="down" not in name, name=name + ".bias")
    return out
