"""Attention against a KV cache in the reserve graph: its inputs (positions, the masks, the cache rows to
write, mainline's Hadamard rotations) and one layer's Q/K/V, cache writes, scores and output projection.

Masks (mainline src/llama-graph.cpp `build_attn_inp_kq_mask`; ik src/llama-build-context.cpp
`build_inp_KQ_mask`): [n_kv, n_tokens], f16 with flash attention, else f32. mainline builds one per cache: a
model with sliding-window or chunked-attention layers (gpt-oss, llama4: `llm_graph_input_attn_kv_iswa`) has a
second mask, and second row indices, over the sliding-window cache, whose n_kv is that cache's size
(`harness.models.attention.cache_cells`); ik keeps the whole context on every layer, and builds a second mask
of the same size for gpt-oss's sliding-window layers (`build_inp_KQ_mask_swa`).

A layer (`build_attn` -> `build_attn_mha`): Q, K, V products (+bias), the per-head (minimax-m2: whole
projection) norms, rope in place; qwen3next/qwen35moe's Q is twice as wide, its second half a gate applied to
the output (cont, sigmoid, mul); the K and V rows written into the cache (set_rows, no new memory); flash
attention (output [head_dim_v, n_head, n_tokens]; attention sinks add nothing) or KQ [n_kv, n_tokens, n_head]
f32, soft_max in place, KQV, made contiguous; the output projection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.knobs import CACHE_TYPE_BYTES
from harness.models.attention import cache_cells
from harness.models.inspect import ModelInfo
from harness.plan.graph_ops import F16, F32, I32, I64, Builder

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings

UNROTATED = ("f32", "f16", "bf16")  # cache types mainline does not rotate (only quantized ones)
FULL, SWA = "full", "swa"


def cache_kind(model: ModelInfo, settings: "MemorySettings", layer: int) -> str:
    """Which cache (and mask) layer `layer` attends through."""
    swa = layer in model.attention.swa_layers
    if settings.dialect == "ik":
        return SWA if swa and model.architecture == "gpt-oss" else FULL
    return SWA if swa and not settings.swa_full else FULL


def layer_cells(model: ModelInfo, settings: "MemorySettings", layer: int) -> int:
    """n_kv of layer `layer` in the worst-case graph: the cells of its cache."""
    return cache_cells(model.attention, layer, settings)


def attention_inputs(b: Builder, model: ModelInfo, settings: "MemorySettings", v_width: int | None = None,
                     rotate: bool = True) -> None:
    """Positions, then per cache kind the layers use: the mask and the rows to write (a transposed V cache,
    without flash attention: one index per element of `v_width`), and in mainline with a quantized cache the
    Hadamard rotations (`llama_kv_cache`: n_rot_k = 64 doubled while it divides the head, n_rot_v = 64)."""
    T, fa = b.T, settings.flash_attn
    n_embd_v = model.n_head_kv * model.head_dim_v if v_width is None else v_width
    b.input(T * I32, "pos")
    attending = [i for i in range(model.n_layers - model.nextn_predict_layers)
                 if i not in model.attention.recurrent_layers]
    kinds = {cache_kind(model, settings, i): layer_cells(model, settings, i) for i in attending}
    for kind in (FULL, SWA):
        if kind not in kinds:
            continue
        b.input(T * I64, f"k_idxs {kind}")
        b.input(T * I64 * (1 if fa else n_embd_v), f"v_idxs {kind}")
        b.input(kinds[kind] * T * (F16 if fa else F32), f"mask {kind}")
    if settings.dialect != "ik" and rotate:
        if settings.cache_type_k not in UNROTATED and model.head_dim_k % 64 == 0:
            n_rot = 64
            while model.head_dim_k % (2 * n_rot) == 0:
                n_rot *= 2
            b.input(n_rot * n_rot * F32, "k_rot")
        if settings.cache_type_v not in UNROTATED and model.head_dim_v % 64 == 0:
            b.input(64 * 64 * F32, "v_rot")


def cache_bytes(n_cells: int, width: int, cache_type: str) -> int:
    return int(n_cells * width * CACHE_TYPE_BYTES[cache_type.lower()])


def attention(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, layer: int, x: int,
              kv_dev: str) -> int:
    """One attention layer's output [n_embd, n_tokens] (before the residual)."""
    g, T = b.g, b.T
    H, D, Dv, Hkv = model.n_head, model.head_dim_k, model.head_dim_v, model.n_head_kv
    kind, n_kv = cache_kind(model, settings, layer), layer_cells(model, settings, layer)
    q = b.matmul(p + "attn_q.weight", x)
    k = b.matmul(p + "attn_k.weight", x)
    v = b.matmul(p + "attn_v.weight", x)
    gate = None
    if b.nbytes(q) == 2 * H * D * T * F32:   # qwen3next / qwen35moe: query and gate in one projection
        gate = g.view(q, name="gate")
        q = g.view(q, name="q")
    heads, unroped = [], []
    for cur, norm, n in ((q, "attn_q_norm.weight", H * D), (k, "attn_k_norm.weight", Hkv * D)):
        if b.w.has(p + norm):
            cur = b.norm(cur, p + norm, n)
        unroped.append(cur)
        heads.append(g.add(n * T * F32, g.view(cur, name="reshape"), b.inputs["pos"], inplace=True, name="rope"))
    q, k = heads
    held = ()
    if not settings.flash_attn and settings.dialect != "ik":
        # seen, not derived: mainline without flash attention reserves one more query-sized tensor at the
        # scores than this replay (tiny, 512 to 16384 cells: +n_head x head_dim x n_tokens f32); held here
        # as the query before its rope, kept until KQ
        g.nodes[q].inplace = False
        held = (unroped[0],)
    if "k_rot" in b.inputs:
        q = g.add(b.nbytes(q), b.inputs["k_rot"], g.view(q, name="reshape"), name="hadamard q")
        k = g.add(b.nbytes(k), b.inputs["k_rot"], g.view(k, name="reshape"), name="hadamard k")
    if "v_rot" in b.inputs:
        v = g.add(b.nbytes(v), b.inputs["v_rot"], g.view(v, name="reshape"), name="hadamard v")
    if model.architecture == "llama4":   # Q, K, V in this order, each roped and l2-normed (seen)
        q, k = (g.add(b.nbytes(t), t, inplace=True, name="l2 norm") for t in (q, k))
        g.expand(q), g.expand(k), g.expand(v)
    else:
        g.expand(q), g.expand(v), g.expand(k)   # "added to the graph together so that they are not reordered"
    # the layer's cache: read in place, or copied whole where attention runs on another device (ik on RPC)
    k_cache = g.external(cache_bytes(n_kv, Hkv * D, settings.cache_type_k), kv_dev, "cache_k")
    v_cache = g.external(cache_bytes(n_kv, Hkv * Dv, settings.cache_type_v), kv_dev, "cache_v")
    g.expand(g.add(0, k, b.inputs[f"k_idxs {kind}"], k_cache, device=kv_dev, name="set_rows k"))
    g.expand(g.add(0, v, b.inputs[f"v_idxs {kind}"], v_cache, device=kv_dev, name="set_rows v"))
    cur = scores(b, settings, g.view(q, name="permute"), g.view(k_cache, name="k"), g.view(v_cache, name="v"),
                 b.inputs[f"mask {kind}"], H, Dv, n_kv, held)
    if "v_rot" in b.inputs:
        cur = g.add(Dv * H * T * F32, b.inputs["v_rot"], g.view(cur, name="reshape"), name="hadamard out")
    if gate is not None:
        gate = b.unary(g.add(H * D * T * F32, gate, name="cont gate"), "sigmoid")
        cur = b.binary(cur, gate, "gated")
    return b.matmul(p + "attn_output.weight", g.view(cur, name="reshape"))


def scores(b: Builder, settings: "MemorySettings", q: int, k: int, v: int, mask: int, H: int, Dv: int,
           n_kv: int, held: tuple[int, ...] = ()) -> int:
    """`build_attn_mha`: flash attention, or KQ, soft_max (in place), KQV made contiguous (`held`: read by KQ
    too, so kept until it)."""
    g, T = b.g, b.T
    if settings.flash_attn:
        return g.add(Dv * H * T * F32, q, k, v, mask, name="fattn")
    kq = g.add(n_kv * T * H * F32, k, q, *held, name="kq")
    kq = g.add(n_kv * T * H * F32, kq, mask, inplace=True, name="kq_soft_max")
    kqv = g.add(Dv * T * H * F32, v, kq, name="kqv")
    return g.add(Dv * H * T * F32, g.view(kqv, name="permute"), name="kqv_out")
