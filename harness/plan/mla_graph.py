"""Multi-head latent attention (deepseek2 with `kv_lora_rank`) in the reserve graph, per engine.

mainline (src/models/deepseek2.cpp, a file converted for MLA: split `attn_k_b` / `attn_v_b`): q through the
low-rank pair (`attn_q_a`, its norm, `attn_q_b`: [n_head x (nope + rope), n_tokens]), the compressed KV
`attn_kv_a_mqa` [kv_lora_rank + rope, n_tokens], its rope part roped and its latent normed; the absorbed query:
`attn_k_b` x q_nope [kv_lora_rank, n_tokens, n_head], concatenated with the roped q_pe; K = the latent
concatenated with k_pe [kv_lora_rank + rope, n_tokens], written into the K-only cache (`build_attn_inp_k`: one
mask, no V rows); V is a view of that cache. Flash attention gives [kv_lora_rank, n_head, n_tokens], then
`attn_v_b` decompresses it per head [head_dim_v, n_tokens, n_head], made contiguous; without flash attention
KQ [n_kv, n_tokens, n_head], soft_max, V transposed and made contiguous (the cache type), KQV
[kv_lora_rank, n_tokens, n_head], `attn_v_b`, contiguous. Then `attn_output`. An older file (fused
`attn_kv_b`) is ordinary attention with n_head K/V heads to mainline: K = [nope + rope, n_head, n_tokens]
(k_nope and the repeated k_pe concatenated), V made contiguous.

ik's own path, per `-mla` mode and `-amb`, is `harness.plan.ik_mla_graph`'s; a file without `attn_q_a` (a
"lite" model) takes this module's absorbed path on ik too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.inspect import ModelInfo
from harness.plan.attention_graph import cache_bytes, layer_cells, scores
from harness.plan.graph_ops import F32, Builder

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings


def latent_cache_width(model: ModelInfo, settings: "MemorySettings") -> int:
    """The V rows written per token (their indices without flash attention): none for mainline's K-only
    cache; ik -mla 1 without flash attention writes a transposed V of kv_lora_rank."""
    return model.attention.kv_lora_rank if settings.dialect == "ik" and not settings.flash_attn else 1


def latent_attention(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, x: int, kv_dev: str) -> int:
    g, T, a = b.g, b.T, model.attention
    H, R, L = model.n_head, a.rope_dim, a.kv_lora_rank
    if b.w.has(p + "attn_q_a.weight"):
        q = b.matmul(p + "attn_q_a.weight", x)
        q = b.norm(q, p + "attn_q_a_norm.weight")
        q = b.matmul(p + "attn_q_b.weight", q)
    else:
        q = b.matmul(p + "attn_q.weight", x)
    d_qk = b.nbytes(q) // (H * T * F32)                     # nope + rope per head
    nope = d_qk - R
    Dv = b.w.shape[p + "attn_v_b.weight"][1] if b.w.has(p + "attn_v_b.weight") else model.head_dim_v
    kv = b.matmul(p + "attn_kv_a_mqa.weight", x)
    k_pe = g.add(R * T * F32, g.view(kv, name="k_pe"), b.inputs["pos"], name="rope k_pe")
    latent = b.norm(g.view(kv, name="kv_cmpr"), p + "attn_kv_a_norm.weight", L * T)
    q_pe = g.add(R * H * T * F32, g.view(q, name="q_pe"), b.inputs["pos"], name="rope q_pe")
    n_kv = layer_cells(model, settings, 0)
    if not b.w.has(p + "attn_k_b.weight"):   # an older file: ordinary attention, n_head heads of K and V
        kv_b = b.matmul(p + "attn_kv_b.weight", latent)
        v = g.add(Dv * H * T * F32, g.view(kv_b, name="v"), name="cont v")
        k = g.add(d_qk * H * T * F32, g.view(kv_b, name="k_nope"),
                  g.add(R * H * T * F32, k_pe, name="repeat k_pe"), name="concat k")
        k_cache = g.external(cache_bytes(n_kv, H * d_qk, settings.cache_type_k), kv_dev, "cache_k")
        v_cache = g.external(cache_bytes(n_kv, H * Dv, settings.cache_type_v), kv_dev, "cache_v")
        q = g.add(d_qk * H * T * F32, q, b.inputs["pos"], inplace=True, name="rope q")
        g.expand(q), g.expand(v), g.expand(k)
        g.expand(g.add(0, k, b.inputs["k_idxs full"], k_cache, device=kv_dev, name="set_rows k"))
        g.expand(g.add(0, v, b.inputs["v_idxs full"], v_cache, device=kv_dev, name="set_rows v"))
        cur = scores(b, settings, g.view(q, name="q"), g.view(k_cache, name="k"), g.view(v_cache, name="v"),
                     b.inputs["mask full"], H, Dv, n_kv)
        return b.matmul(p + "attn_output.weight", g.view(cur, name="reshape"))
    q_abs = g.add(L * T * H * F32, g.view(q, name="q_nope"), device=b.w.dev(p + "attn_k_b.weight"),
                  name="q_nope_absorbed")
    q_cur = g.add((L + R) * H * T * F32, q_abs, q_pe, name="concat q")
    k_cur = g.add((L + R) * T * F32, latent, k_pe, name="concat k")
    g.expand(q_cur), g.expand(k_cur)
    k_cache = g.external(cache_bytes(n_kv, L + R, settings.cache_type_k), kv_dev, "cache_k")
    g.expand(g.add(0, k_cur, b.inputs["k_idxs full"], k_cache, device=kv_dev, name="set_rows k"))
    k_view = g.view(k_cache, name="k")
    if settings.flash_attn:
        cur = g.add(L * H * T * F32, q_cur, k_view, g.view(k_cache, name="v"), b.inputs["mask full"], name="fattn")
    else:
        kq = g.add(n_kv * T * H * F32, k_view, q_cur, name="kq")
        kq = g.add(n_kv * T * H * F32, kq, b.inputs["mask full"], inplace=True, name="kq_soft_max")
        v_t = g.add(cache_bytes(n_kv, L, settings.cache_type_k), g.view(k_cache, name="v"), name="v_cont")
        cur = g.add(L * T * H * F32, v_t, kq, name="kqv")
    cur = g.add(Dv * T * H * F32, g.view(cur, name="permute"), device=b.w.dev(p + "attn_v_b.weight"),
                name="kqv_mla")
    cur = g.add(Dv * H * T * F32, g.view(cur, name="permute"), name="cont")
    return b.matmul(p + "attn_output.weight", g.view(cur, name="reshape"))
