"""ik_llama.cpp's multi-head latent attention in the reserve graph (0.1.5, src/llama-build-context.cpp
`build_deepseek2`), per `-mla` mode and `-amb` (a file with `attn_q_a`; the cache is the latent, one row of
`kv_lora_rank + rope` per token, `harness.models.attention.kv_bytes_of_layer`).

Every mode: q_a and the compressed KV products, q's norm and q_b, both ropes, the latent's norm; `-mla 1`
without flash attention then copies the latent, transposed, into its V cache; the rope part and the latent
concatenated (`kvr`) and copied into the cache. Then one of two paths:
- decompressing (`-mla 2`/`3` with flash attention and a micro-batch of `pp_opt`, >= 128 tokens): the whole
  cache through `attn_kv_b` [n_head x (nope + v), n_kv] f32, K (the repeated rope part and nope) and V cast to
  the cache's type, flash attention of the concatenated query, `n_max_head` heads at a time: all of them, or,
  with `-amb N` and the f32 product over N MiB, the fewest steps (n_head / a divisor of n_head) under N MiB,
  their outputs concatenated;
- absorbed (every other case): q_nope through `attn_k_b` [kv_lora_rank, n_tokens, n_head], concatenated with
  q's rope part; flash attention (`-mla 1`/`3`) against the cache and its latent view, or KQ / soft_max / KQV
  against the transposed latent: `-mla 1`'s V cache, `-mla 2`/`3`'s latent made contiguous; below `pp_opt` the
  query and KQ are permuted (KQ made contiguous). With `-amb N` and KQ over N MiB, KQ is computed in
  ceil(KQ / N) steps of heads, their KQV concatenated. Then `attn_v_b` per head, made contiguous.
Then `attn_output`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.models.attention import IK_DEFAULT_MLA
from harness.models.inspect import ModelInfo
from harness.plan.attention_graph import cache_bytes, layer_cells
from harness.plan.graph_ops import F32, Builder
from harness.plan.placement import is_accelerator
from harness.units import MIB

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings

PP_OPT_TOKENS = 128   # ik build_deepseek2: pp_opt = n_tokens >= 128


def decompressed_heads_per_step(n_head: int, kv_f32_mib: int, amb_mib: int) -> int:
    """ik's `n_max_head`: every head, or with `-amb` under the f32 decompressed cache's MiB, n_head / the first
    divisor (2 .. n_head - 1) that brings it under `amb_mib`, else one."""
    if amb_mib <= 0 or kv_f32_mib <= amb_mib:
        return n_head
    return next((n_head // k for k in range(2, n_head) if n_head % k == 0 and kv_f32_mib // k <= amb_mib), 1)


def kq_head_steps(n_head: int, kq_mib: int, amb_mib: int) -> list[int]:
    """The heads of each KQ step on the absorbed path: one step, or with `-amb` under KQ's MiB ceil(KQ / amb)
    steps (at most n_head) of ceil(n_head / steps) heads, the last the rest."""
    if amb_mib <= 0 or amb_mib >= kq_mib:
        return [n_head]
    n_step = min((kq_mib + amb_mib - 1) // amb_mib, n_head)
    per = (n_head + n_step - 1) // n_step
    return [min(per, n_head - h) for h in range(0, n_head, per)]


def ik_latent_attention(b: Builder, model: ModelInfo, settings: "MemorySettings", p: str, x: int, kv_dev: str
                        ) -> int:
    g, T, a = b.g, b.T, model.attention
    H, R, L = model.n_head, a.rope_dim, a.kv_lora_rank
    mode = IK_DEFAULT_MLA if settings.mla_mode is None else settings.mla_mode
    fa, amb = settings.flash_attn, settings.attn_max_batch_mib
    # in ik's order (seen): q_a, kv_a, q's norm and q_b, both ropes, the latent's norm
    q = g.expand(b.op(b.w.rows(p + "attn_q_a.weight") * T * F32, x, weight=p + "attn_q_a.weight"))
    kv = g.expand(b.op((L + R) * T * F32, x, weight=p + "attn_kv_a_mqa.weight", name="kv_rope_compressed"))
    q = b.op(b.nbytes(q), q, weight=p + "attn_q_a_norm.weight", name="fused_rms_norm q")
    q = b.op(b.w.rows(p + "attn_q_b.weight") * T * F32, q, weight=p + "attn_q_b.weight")
    d_qk = b.nbytes(q) // (H * T * F32)
    nope = d_qk - R
    Dv = b.w.shape[p + "attn_v_b.weight"][1] if b.w.has(p + "attn_v_b.weight") else model.head_dim_v
    q_rope = g.expand(g.add(R * H * T * F32, g.view(q, name="q_rope"), b.inputs["pos"], name="rope q"))
    k_rope = g.expand(g.add(R * T * F32, g.view(kv, name="k_rope"), b.inputs["pos"], name="rope k"))
    latent = b.op(L * T * F32, g.view(kv, name="kv_compressed"), weight=p + "attn_kv_a_norm.weight",
                  name="fused_rms_norm kv")
    n_kv = layer_cells(model, settings, 0)
    v_t = None
    if mode == 1 and not fa:   # the latent, transposed, into the V cache
        v_cache = g.external(cache_bytes(n_kv, L, settings.cache_type_k), kv_dev, "cache_v")
        g.expand(g.add(0, latent, v_cache, device=kv_dev, name="cpy kv_compressed^T"))
        v_t = g.view(v_cache, name="kv_cache_trans")
    kvr = g.add((L + R) * T * F32, g.view(k_rope, name="permute"), latent, name="kvr")
    cache = g.external(cache_bytes(n_kv, L + R, settings.cache_type_k), kv_dev, "cache_k")
    g.expand(g.add(0, kvr, cache, device=kv_dev, name="cpy kvr"))
    if mode > 1 and fa and T >= PP_OPT_TOKENS:
        cur = _decompressed(b, settings, p, q, q_rope, cache, kv_dev, (H, R, nope, Dv, n_kv))
        return b.op(model.n_embd * T * F32, cur, weight=p + "attn_output.weight")
    q_abs = g.add(L * T * H * F32, g.view(q, name="q_nope_perm"), device=b.w.dev(p + "attn_k_b.weight"),
                  name="q_nope2")
    q_cur = g.add((L + R) * H * T * F32, g.view(q_rope, name="permute"), q_abs, name="concat q")
    if fa and mode in (1, 3):
        cur = g.view(g.add(L * H * T * F32, q_cur, g.view(cache, name="kv_cache"),
                           g.view(cache, name="kv_cache_lora"), b.inputs["mask full"], name="kqv_compressed"),
                     name="permute")
    else:
        if v_t is None:
            v_t = g.add(cache_bytes(n_kv, L, settings.cache_type_v), g.view(cache, name="trans"),
                        name="kv_cache_trans")
        cur = _absorbed_kq(b, q_cur, v_t, cache, (H, L, n_kv), amb)
    cur = g.add(Dv * T * H * F32, cur, device=b.w.dev(p + "attn_v_b.weight"), name="kqv")
    if T > 1:
        cur = g.add(Dv * H * T * F32, g.view(cur, name="permute"), name="kqv_perm")
    cur = g.expand(g.view(cur, name="kqv_2d"))
    return b.op(model.n_embd * T * F32, cur, weight=p + "attn_output.weight")


def _absorbed_kq(b: Builder, q_cur: int, v_t: int, cache: int, dims: tuple[int, int, int], amb: int) -> int:
    """KQ, soft_max and KQV of the absorbed path without flash attention (one step or `-amb`'s steps)."""
    g, T = b.g, b.T
    H, L, n_kv = dims
    steps = kq_head_steps(H, n_kv * T * H * F32 // MIB, amb)
    k_view = g.view(cache, name="kv_cache")
    if len(steps) == 1:
        kq = g.add(n_kv * T * H * F32, k_view, g.view(q_cur, name="q_perm"), name="kq")
        if T < PP_OPT_TOKENS:
            kq = g.add(n_kv * T * H * F32, g.view(kq, name="permute"), name="kq_perm")
        kq = g.add(n_kv * T * H * F32, kq, b.inputs["mask full"], inplace=True, name="kq_soft_max")
        return g.view(g.add(L * T * H * F32, v_t, g.view(kq, name="permute"), name="kqv_compressed"),
                      name="permute")
    cur, done = None, 0
    for h in steps:
        kq = g.add(n_kv * T * h * F32, k_view, g.view(q_cur, name="q_i"), name="kq_i")
        kq = g.add(n_kv * T * h * F32, kq, b.inputs["mask full"], inplace=True, name="kq_soft_max_i")
        kqv = g.add(L * T * h * F32, v_t, kq, name="kqv_i")
        done += h
        cur = kqv if cur is None else g.add(L * T * done * F32, cur, kqv, name="concat kqv_compressed")
        g.expand(cur)
    return cur


def _decompressed(b: Builder, settings: "MemorySettings", p: str, q: int, q_rope: int, cache: int, kv_dev: str,
                  dims: tuple[int, int, int, int, int]) -> int:
    """The decompressing path: `n_max_head` heads of K and V per step, their flash attention concatenated."""
    g, T = b.g, b.T
    H, R, nope, Dv, n_kv = dims
    kv_f32_mib = H * (nope + Dv) * n_kv * F32 // MIB
    h = decompressed_heads_per_step(H, kv_f32_mib, settings.attn_max_batch_mib)
    # K and V cast to the cache's type on a context with the CPU backend alone, else to f16 (seen: q8_0 on the
    # RPC rig casts to f16); an accelerator in the placement, or ik beside an RPC device, is another backend
    other_backend = settings.kv_on_cpu or any(is_accelerator(d) for d in b.w.device.values())
    ct = "f16" if other_backend else settings.cache_type_k
    k_rope = g.add(cache_bytes(n_kv, R * h, ct), g.view(cache, name="kv_cache_rope"), name="repeat k_rope")
    q_cur = g.expand(g.add((R + nope) * H * T * F32, q_rope, g.view(q, name="q_nope"), name="q_concat"))
    # attn_kv_b, computed at load from attn_k_b / attn_v_b, sits with them
    kv_b_dev = b.w.dev(p + "attn_k_b.weight") or kv_dev
    cur = None
    for step in range(H // h):
        kv_f32 = g.add(h * (nope + Dv) * n_kv * F32, g.view(cache, name="kv_cache_nope"), device=kv_b_dev,
                       name="kv_f32")
        v = g.add(cache_bytes(n_kv, Dv * h, ct), g.view(kv_f32, name="v_f32"), name="v")
        k_nope = g.expand(g.add(cache_bytes(n_kv, nope * h, ct), g.view(kv_f32, name="k_nope_f32"),
                                name="k_nope"))
        g.expand(v)
        k = g.expand(g.add(cache_bytes(n_kv, (R + nope) * h, ct), k_rope, k_nope, name="k"))
        kqv = g.add(Dv * h * T * F32, g.view(q_cur, name="q_iter"), k, v, b.inputs["mask full"], name="kqv")
        kqv = g.view(kqv, name="reshape")
        cur = kqv if cur is None else g.add(Dv * h * (step + 1) * T * F32, cur, kqv, name="concat kqv")
        g.expand(cur)
    return cur
