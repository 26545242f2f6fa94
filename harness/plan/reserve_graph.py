"""The worst-case graph both engines allocate their compute buffers for: one micro-batch of `n_tokens` tokens
against the whole cache, tensor by tensor, per engine.

The outputs: mainline `llama_context::sched_reserve` reserves n_outputs = min(n_tokens, n_outputs_max), where
n_outputs_max is n_batch for llama-bench and the server's slots x (1 + draft tokens) for llama-server
(tools/server/server-context.cpp `server_output_limits`); ik `llama_build_graph(worst_case)` makes every token
an output. Only those rows go through the last layer's residual and the output matrix (logits
[n_vocab, n_outputs] f32).

The layers, by kind: attention against a KV cache (`harness.plan.attention_graph`), multi-head latent
attention (`harness.plan.mla_graph`), a gated delta-net recurrent layer (`harness.plan.delta_net_graph`); then
the FFN (`harness.plan.ffn_graph`). The embeddings: mainline builds all three inputs of `build_inp_embd` and
selects one (ggml_build_forward_select): the embeddings input and the mixed batch's copy stay allocated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.inspect import ModelInfo
from harness.plan.attention_graph import attention, attention_inputs
from harness.plan.delta_net_graph import delta_net, delta_net_inputs, ik_delta_net
from harness.plan.ffn_graph import ffn
from harness.plan.graph_alloc import Graph
from harness.plan.graph_ops import F32, I32, I64, Builder, Weights
from harness.plan.ik_graph import ik_reserve_graph
from harness.plan.ik_mla_graph import ik_latent_attention
from harness.plan.mla_graph import latent_attention, latent_cache_width
from harness.plan.placement import CPU, Placement

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings


def graph_known(model: ModelInfo) -> bool:
    """Whether every layer is one this module builds: attention (Q/K/V/output, or MLA's latent projections, or
    a delta-net's), then routed experts or a dense FFN."""
    names = {t.name for t in model.tensors}
    for il in range(model.n_layers - model.nextn_predict_layers):
        p = f"blk.{il}."
        attention_ok = (all(f"{p}attn_{m}.weight" in names for m in ("q", "k", "v", "output"))
                        or model.attention.is_mla and f"{p}attn_kv_a_mqa.weight" in names
                        or il in model.attention.recurrent_layers and f"{p}ssm_out.weight" in names)
        moe = all(f"{p}ffn_{m}_exps.weight" in names for m in ("up", "gate", "down")) and \
            f"{p}ffn_gate_inp.weight" in names
        dense = all(f"{p}ffn_{m}.weight" in names for m in ("up", "gate", "down"))
        if not attention_ok or not (moe or dense):
            return False
    return bool(model.n_head and model.head_dim_k)


def n_outputs(settings: "MemorySettings", n_tokens: int) -> int:
    if settings.dialect == "ik" or settings.n_outputs_max is None:
        return n_tokens
    return max(1, min(n_tokens, settings.n_outputs_max))


def reserve_graph(placement: Placement, model: ModelInfo, settings: "MemorySettings", n_tokens: int) -> Graph:
    """The worst-case graph of one micro-batch of `n_tokens` tokens (see the module doc; ik's own fused graph:
    `harness.plan.ik_graph`)."""
    if settings.dialect == "ik":
        return ik_reserve_graph(placement, model, settings, n_tokens, _ik_layer)
    w = Weights(placement, model)
    b = Builder(Graph(), w, n_tokens, n_outputs(settings, n_tokens))
    g, T, E = b.g, n_tokens, model.n_embd
    embd_dev = w.dev("token_embd.weight") or CPU
    tokens = g.input(T * I32, CPU, "inp_tokens")
    inp = g.expand(g.add(E * T * F32, tokens, device=embd_dev, name="get_rows"))
    if settings.dialect != "ik":
        g.expand(g.input(E * T * F32, CPU, "inp_embd"))
        mixed = g.add(E * T * F32, g.input(E * T * F32, CPU, "inp_mixed_embd"), name="dup")
        rows = g.add(E * T * F32, g.input(T * I32, CPU, "inp_mixed_tokens"), device=embd_dev, name="get_rows")
        slots = g.input(T * I64, CPU, "inp_mixed_slots")
        g.expand(g.view(mixed, reads=(rows, slots, mixed), name="set_rows"))  # ggml_set_rows: src = b, c, a
    mla = model.attention.is_mla
    if mla:
        attention_inputs(b, model, settings, v_width=latent_cache_width(model, settings), rotate=False)
    else:
        attention_inputs(b, model, settings)
    if model.attention.recurrent_layers:
        delta_net_inputs(b, model, settings)
    out_ids = g.input(b.n_outputs * I32, CPU, "inp_out_ids")
    n_run = model.n_layers - model.nextn_predict_layers
    for il in range(n_run):
        p = f"blk.{il}."
        kv_dev = CPU if settings.kv_on_cpu else placement.layer_devices[il]
        residual = inp
        cur = b.norm(inp, p + "attn_norm.weight", E * T)
        if il in model.attention.recurrent_layers:
            cur = delta_net(b, model, settings, p, cur, kv_dev)
        elif mla:
            cur = latent_attention(b, model, settings, p, cur, kv_dev)
        else:
            cur = attention(b, model, settings, p, il, cur, kv_dev)
        rows = T
        if il == n_run - 1:  # only the output rows go on
            rows = b.n_outputs
            cur = g.add(E * rows * F32, cur, out_ids, name="get_rows")
            residual = g.add(E * rows * F32, residual, out_ids, name="get_rows")
        ffn_inp = g.add(E * rows * F32, cur, residual, inplace=True, name="ffn_inp")
        norm_name = p + ("ffn_norm.weight" if w.has(p + "ffn_norm.weight") else "post_attention_norm.weight")
        layer_b = b if rows == T else Builder(g, w, rows, rows, b.inputs)
        cur = layer_b.norm(ffn_inp, norm_name, E * rows)
        out = ffn(layer_b, p, cur, E, model.n_experts, model.n_experts_used, model.architecture)
        inp = g.add(E * rows * F32, out, ffn_inp, inplace=True, name="l_out")
    cur = Builder(g, w, b.n_outputs, b.n_outputs).norm(inp, "output_norm.weight", E * b.n_outputs)
    out_name = "output.weight" if w.has("output.weight") else "token_embd.weight"
    logits = g.expand(g.add(model.vocab_size * b.n_outputs * F32, cur, device=w.dev(out_name),
                            name="result_output"))
    g.nodes[logits].is_output = True
    return g


def _ik_layer(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, il: int, x: int, kv_dev: str
              ) -> int | None:
    """ik's layers that are not plain attention: delta-net, latent attention (`harness.plan.ik_mla_graph`, per
    `-mla` mode and `-amb`; a file without `attn_q_a`: the absorbed path, as mainline's)."""
    if il in model.attention.recurrent_layers:
        return ik_delta_net(b, model, settings, p, x, kv_dev)
    if not model.attention.is_mla:
        return None
    if b.w.has(p + "attn_q_a.weight"):
        return ik_latent_attention(b, model, settings, p, x, kv_dev)
    for name, n_bytes in (("k_idxs full", b.T * I64), ("v_idxs full", b.T * I64)):
        b.inputs.setdefault(name, b.g.input(n_bytes, CPU, name))
    return latent_attention(b, model, settings, p, x, kv_dev)
