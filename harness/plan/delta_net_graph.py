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
    g, T, a = b.g, b.T, model.attention
    S, Hk, Hv, d_inner = a.ssm_d_state, a.ssm_n_group, a.ssm_n_v_heads, a.ssm_d_inner
    channels = d_inner + 2 * Hk * S
    head_v = d_inner // max(Hv, 1)
    qkv = b.matmul(p + "attn_qkv.weight", x)
    z = b.matmul(p + "attn_gate.weight", x)
    if b.w.has(p + "ssm_ba.weight"):
        ba = b.matmul(p + "ssm_ba.weight", x)
        beta = g.add(Hv * T * F32, g.view(ba, name="b"), name="cont b")
        alpha = g.add(Hv * T * F32, g.view(ba, name="a"), name="cont a")
    else:
        beta = b.matmul(p + "ssm_beta.weight", x)
        alpha = b.matmul(p + "ssm_alpha.weight", x)
    beta = b.unary(beta, "sigmoid")
    alpha = b.op(Hv * T * F32, alpha, weight=p + "ssm_dt.bias", inplace=True, name="alpha_biased")
    alpha = b.unary(alpha, "softplus")
    gate = b.op(Hv * T * F32, alpha, weight=p + "ssm_a", inplace=True, name="gate")
    d_conv = max(a.ssm_d_conv, 1)
    conv_state = g.external((d_conv - 1) * channels * F32, state_dev, "conv_state")
    conv_state = g.add((d_conv - 1) * channels * F32, conv_state, b.inputs["s_copy"], name="conv_states")
    qkv_t = g.add(channels * T * F32, g.view(qkv, name="transpose"), name="qkv_t")
    conv_input = g.add(channels * (T + d_conv - 1) * F32, conv_state, qkv_t, name="conv_input")
    g.expand(g.add(0, conv_input, name="conv_state_update"))
    conv = b.op(channels * T * F32, conv_input, weight=p + "ssm_conv1d.weight", name="ssm_conv")
    conv = b.unary(conv, "silu")
    q = g.add(S * Hk * T * F32, g.view(conv, name="q"), name="l2_norm q")
    k = g.add(S * Hk * T * F32, g.view(conv, name="k"), name="l2_norm k")
    v = g.view(conv, name="v")
    if Hv != Hk:
        q = g.add(S * Hv * T * F32, q, name="repeat q")
        k = g.add(S * Hv * T * F32, k, name="repeat k")
    state = g.external(head_v * head_v * Hv * F32, state_dev, "ssm_state")
    state = g.add(head_v * head_v * Hv * F32, state, b.inputs["s_copy"], name="state")
    out = g.add((head_v * Hv * T + head_v * head_v * Hv) * F32, q, k, v, gate, beta, state, name="gated_delta_net")
    g.expand(g.add(0, g.view(out, name="new_state"), name="state_update"))
    normed = g.add(head_v * Hv * T * F32, g.view(out, name="output"), inplace=True, name="norm")
    normed = b.op(head_v * Hv * T * F32, normed, weight=p + "ssm_norm.weight", inplace=True)
    z = b.unary(z, "silu")
    gated = b.binary(normed, z, "norm_gated")
    return b.matmul(p + "ssm_out.weight", gated)
