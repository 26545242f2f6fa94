"""A gated delta-net layer (qwen3next, qwen35moe: every layer but each `full_attention_interval`-th) in the
reserve graph.

mainline (src/models/qwen3next.cpp, qwen35moe.cpp `build_layer_attn_linear`; delta-net-base.cpp): the qkv+z
projection (qwen3next one `attn_qkv` [d_inner + 2 n_group d_state] and `attn_gate` [d_inner]; qwen35moe the
same two), beta/alpha (`ssm_ba`, or `ssm_beta` and `ssm_alpha`) with their sigmoid / softplus; the conv input:
the layer's conv state (d_conv - 1 columns) concatenated with the transposed projection, the 1-d convolution
[channels, n_tokens] and its silu; q and k l2-normed (and repeated to the value heads where those are more);
the fused gated delta-net op (`ggml_gated_delta_net`, the CPU and RPC backends take it: `fused_gdn_ch`),
whose result holds the output [d_state, n_v_heads, n_tokens] and the new state [d_state, d_state, n_v_heads];
the gated rms norm (norm, weight, silu(z), mul) and `ssm_out`. The states are written back into the recurrent
cache with copies (no new memory). ik (src/llama-build-context.cpp) builds the same shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.inspect import ModelInfo
from harness.plan.graph_ops import F32, I32, Builder

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings


def delta_net_inputs(b: Builder, model: ModelInfo, settings: "MemorySettings") -> None:
    """The recurrent cache's row ids (`inp_s_copy`: one per sequence)."""
    b.input(max(1, settings.n_seq) * I32, "s_copy")


def delta_net(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, x: int, state_dev: str) -> int:
    """In the engine's order (seen in its scheduler dump): the conv state's rows, the qkv product, its transposed
    view concatenated after the conv state, the state's rows, conv and silu, q and k l2-normed (rms_norm and
    scale) and repeated, beta/alpha, the fused delta-net, the gated norm with z made last, `ssm_out`."""
    g, T, a = b.g, b.T, model.attention
    S, Hk, Hv, d_inner = a.ssm_d_state, a.ssm_n_group, a.ssm_n_v_heads, a.ssm_d_inner
    channels = d_inner + 2 * Hk * S
    head_v = d_inner // max(Hv, 1)
    d_conv = max(a.ssm_d_conv, 1)
    conv_cache = g.external((d_conv - 1) * channels * F32, state_dev, "conv_state")
    conv_state = g.add((d_conv - 1) * channels * F32, conv_cache, b.inputs["s_copy"], name="conv_states")
    qkv = b.matmul(p + "attn_qkv.weight", x)
    conv_input = g.add(channels * (T + d_conv - 1) * F32, conv_state, g.view(qkv, name="transposed"),
                       name="conv_input")
    g.expand(g.add(0, g.view(conv_input, name="conv_state_last"), name="conv_state_update"))
    state_cache = g.external(head_v * head_v * Hv * F32, state_dev, "ssm_state")
    state = g.add(head_v * head_v * Hv * F32, state_cache, b.inputs["s_copy"], name="state")
    conv = b.op(channels * T * F32, conv_input, weight=p + "ssm_conv1d.weight", name="ssm_conv")
    conv = b.unary(conv, "silu")
    heads = []
    for part in ("q", "k"):
        cur = g.add(S * Hk * T * F32, g.view(conv, name=part), name=f"l2_norm {part}")
        cur = b.unary(cur, "scale")
        if Hv != Hk:
            cur = g.add(S * Hv * T * F32, g.view(cur, name="reshape"), name=f"repeat {part}")
        heads.append(cur)
    if b.w.has(p + "ssm_ba.weight"):
        ba = b.matmul(p + "ssm_ba.weight", x)
        alpha = g.add(Hv * T * F32, g.view(ba, name="a"), name="cont a")
    else:
        beta_raw = b.matmul(p + "ssm_beta.weight", x)
        alpha = b.matmul(p + "ssm_alpha.weight", x)
    alpha = b.op(Hv * T * F32, alpha, weight=p + "ssm_dt.bias", inplace=True, name="alpha_biased")
    alpha = b.unary(alpha, "softplus")
    gate = b.op(Hv * T * F32, alpha, weight=p + "ssm_a", inplace=True, name="gate")
    if b.w.has(p + "ssm_ba.weight"):
        beta = g.add(Hv * T * F32, g.view(ba, name="b"), name="cont b")
    else:
        beta = beta_raw
    beta = b.unary(beta, "sigmoid")
    out = g.add((head_v * Hv * T + head_v * head_v * Hv) * F32, heads[0], heads[1], g.view(conv, name="v"), gate,
                beta, state, name="gated_delta_net")
    g.expand(g.add(0, g.view(out, name="new_state"), name="state_update"))
    normed = g.add(head_v * Hv * T * F32, g.view(out, name="output"), name="norm")
    normed = b.op(head_v * Hv * T * F32, normed, weight=p + "ssm_norm.weight", inplace=True)
    z = b.unary(g.view(b.matmul(p + "attn_gate.weight", x), name="reshape"), "silu")
    gated = b.binary(normed, z, "norm_gated")
    return b.matmul(p + "ssm_out.weight", gated)


def ik_delta_net(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, x: int, state_dev: str) -> int:
    """ik (seen in its dump): the qkv, z and beta/alpha products first (z lives through the layer), one
    `ssm_conv` over the conv state and the projection, silu, q and k l2-normed (no repeat: its delta-net op
    takes the key heads), the fused `delta_net` (output + new state), the new states concatenated and copied
    back, the fused rms norm and the fused silu(z) multiplication, `ssm_out`."""
    g, T, a = b.g, b.T, model.attention
    S, Hk, Hv, d_inner = a.ssm_d_state, a.ssm_n_group, a.ssm_n_v_heads, a.ssm_d_inner
    channels = d_inner + 2 * Hk * S
    head_v = d_inner // max(Hv, 1)
    d_conv = max(a.ssm_d_conv, 1)
    qkv = g.expand(b.op(channels * T * F32, x, weight=p + "attn_qkv.weight"))
    z = g.expand(b.op(d_inner * T * F32, x, weight=p + "attn_gate.weight"))
    names = ("ssm_ba.weight",) if b.w.has(p + "ssm_ba.weight") else ("ssm_beta.weight", "ssm_alpha.weight")
    gates = [g.expand(b.op(b.w.rows(p + n) * T * F32, x, weight=p + n)) for n in names]
    conv_cache = g.external((d_conv - 1) * channels * F32, state_dev, "conv_state")
    conv_state = g.add((d_conv - 1) * channels * F32, conv_cache, b.inputs["s_copy"], name="conv_states")
    conv = b.op(channels * (T + d_conv - 1) * F32, conv_state, g.view(qkv, name="transposed"),
                weight=p + "ssm_conv1d.weight", name="ssm_conv")
    conv = g.add(channels * T * F32, g.view(conv, name="conv_output"), name="silu")
    q = g.add(S * Hk * T * F32, g.view(conv, name="q"), name="l2_norm q")
    k = g.add(S * Hk * T * F32, g.view(conv, name="k"), name="l2_norm k")
    beta = b.unary(g.add(Hv * T * F32, g.view(gates[0], name="b"), name="cont b"), "sigmoid")
    alpha = b.unary(g.add(Hv * T * F32, g.view(gates[-1], name="a"), name="cont a"), "softplus")
    state_cache = g.external(head_v * head_v * Hv * F32, state_dev, "ssm_state")
    state = g.add(head_v * head_v * Hv * F32, state_cache, b.inputs["s_copy"], name="state")
    out = g.add((head_v * Hv * T + head_v * head_v * Hv) * F32, q, k, g.view(conv, name="v"), alpha, beta, state,
                name="delta_net")
    new = g.add(((d_conv - 1) * channels + head_v * head_v * Hv) * F32, g.view(conv, name="new_conv_states"),
                g.view(out, name="new_state"), name="new_state_flat")
    g.expand(g.add(0, new, state_cache, device=state_dev, name="state_cpy"))
    normed = b.op(head_v * Hv * T * F32, g.view(out, name="output"), weight=p + "ssm_norm.weight",
                  name="fused_rms_norm")
    gated = g.add(head_v * Hv * T * F32, g.view(z, name="reshape"), normed, name="fused_mul_silu")
    return b.op(model.n_embd * T * F32, gated, weight=p + "ssm_out.weight")
