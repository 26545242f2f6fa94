"""The compute buffers a placement makes the engine reserve on each device.

Both engines size their compute buffers once, when the context is made, by allocating the worst-case graph:
one micro-batch of n_tokens = min(n_ctx, n_ubatch) tokens against the whole KV cache, with every token an
output (mainline `llama_context::sched_reserve`: n_outputs = min(n_tokens, n_outputs_max = n_batch); ik
`llama_build_graph(worst_case)`: n_outputs = n_tokens), also a one-token graph, keeping the larger buffer. This
module builds that graph, tensor by tensor, for the layer kinds of the architectures moebench knows (attention
with a KV cache, routed experts with or without shared experts, a dense FFN), and sizes it with ggml's
scheduler and allocator rules (`harness.plan.graph_alloc`).

The graph follows mainline's `llm_graph_context` (`build_attn`, `build_moe_ffn`, `build_ffn`) and the
qwen3moe / glm4moe builders: per layer rms_norm, Q/K/V products (+bias, per-head norm, rope in place), the K and
V rows written into the cache, then either flash attention (an f16 mask; the output [head_dim_v, n_head,
n_tokens]) or KQ = K·Q [n_kv, n_tokens, n_head] in f32 with soft_max in place and KQV made contiguous; the
output projection; the router (soft_max or sigmoid + selection bias), top-k, the weights (normalized), the
three expert products [n_ff, n_expert_used, n_tokens] and their SwiGLU, the weighted sum; shared experts as a
dense FFN beside them; at the last layer only the output rows go on; the logits [n_vocab, n_outputs] in f32.

With op offload (CUDA and other GPUs, not an RPC server), a micro-batch of at least 32 tokens runs the
products of RAM-held weights on the accelerator, which copies those weights into its compute buffer one
layer at a time: the largest layer's RAM-held weights are added there (source only: no GPU here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.knobs import CACHE_TYPE_BYTES
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import layer_index
from harness.plan.graph_alloc import Graph, assign_devices, peak_bytes, with_copies
from harness.plan.placement import CPU, INPUT_TENSORS, Placement, is_accelerator

if TYPE_CHECKING:
    from harness.plan.memory import MemorySettings

OFFLOAD_MIN_BATCH = 32  # ggml-cuda: op_offload_min_batch_size, the batch from which ops are offloaded
F32 = 4
UNROTATED = ("f32", "f16", "bf16")  # cache types mainline does not rotate (only quantized ones)


_CACHE: dict[tuple, dict[str, int]] = {}   # the same placement and settings planned again (tune, plan, run)
_CACHE_SIZE = 4096


def compute_bytes_by_device(placement: Placement, model: ModelInfo, settings: "MemorySettings") -> dict[str, int]:
    """The compute buffer bytes each device reserves (devices with none are left out)."""
    key = (model.name, model.tensor_bytes_total, model.n_layers, tuple(sorted(placement.tensor_devices.items())),
           placement.layer_devices, placement.output_device, settings)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = _compute_bytes(placement, model, settings)
    return dict(_CACHE[key])


def _compute_bytes(placement: Placement, model: ModelInfo, settings: "MemorySettings") -> dict[str, int]:
    n_tokens = max(1, min(settings.n_ctx, settings.n_ubatch))
    if not _graph_known(model):
        out = _coarse_estimate(placement, model, settings, n_tokens)
    else:
        out = {}
        for tokens in (n_tokens, 1):  # the prompt graph, then the one-token graph: the larger buffer stays
            graph = reserve_graph(placement, model, settings, tokens).ordered()
            devices = assign_devices(graph, CPU)
            copied, copied_devices = with_copies(graph, devices)
            for device, n_bytes in peak_bytes(copied, copied_devices).items():
                out[device] = max(out.get(device, 0), n_bytes)
    accelerators = sorted(d for d in placement.devices() if is_accelerator(d))
    if settings.op_offload and n_tokens >= OFFLOAD_MIN_BATCH and accelerators:
        out[accelerators[0]] = out.get(accelerators[0], 0) + _largest_ram_layer_bytes(placement, model)
    return {d: b for d, b in out.items() if b > 1}  # the engines print only buffers over 1 byte


def _graph_known(model: ModelInfo) -> bool:
    """Whether every layer is one `reserve_graph` builds: Q/K/V/output projections and routed experts (up, gate,
    down) or a dense FFN. Other layer kinds (latent attention, recurrent state, merged experts, ...) get the
    coarse estimate until their graph is modelled."""
    names = {t.name for t in model.tensors}
    for il in range(model.n_layers - model.nextn_predict_layers):
        p = f"blk.{il}."
        attention = all(f"{p}attn_{m}.weight" in names for m in ("q", "k", "v", "output"))
        moe = all(f"{p}ffn_{m}_exps.weight" in names for m in ("up", "gate", "down")) and \
            f"{p}ffn_gate_inp.weight" in names
        dense = all(f"{p}ffn_{m}.weight" in names for m in ("up", "gate", "down"))
        if not attention or not (moe or dense):
            return False
    return bool(model.n_head and model.head_dim_k)


def _coarse_estimate(placement: Placement, model: ModelInfo, settings: "MemorySettings", n_tokens: int
                     ) -> dict[str, int]:
    """f32 activations of one micro-batch on every device a layer runs on (a handful of n_embd-wide tensors), the
    logits where the output layer runs, the attention mask and, without flash attention, the scores of one
    micro-batch against the whole context."""
    out: dict[str, int] = {}
    n_run = model.n_layers - model.nextn_predict_layers
    for device in set(placement.layer_devices[:n_run]) | {placement.output_device, CPU}:
        per_token = 6 * model.n_embd + settings.n_ctx
        if device == placement.output_device:
            per_token += model.vocab_size
        if not settings.flash_attn:
            per_token += max(model.n_head, 1) * settings.n_ctx
        out[device] = n_tokens * per_token * F32
    return out


def _largest_ram_layer_bytes(placement: Placement, model: ModelInfo) -> int:
    """The weight bytes in RAM of the layer that holds the most there (the output layer counts as one)."""
    sizes = {t.name: t.n_bytes for t in model.tensors}
    per_layer: dict[int | None, int] = {}
    for name, device in placement.tensor_devices.items():
        if device == CPU and name not in INPUT_TENSORS:
            layer = layer_index(name)
            per_layer[layer] = per_layer.get(layer, 0) + sizes[name]
    return max(per_layer.values(), default=0)


class _Shapes:
    """A model's tensors by name: shape and device."""

    def __init__(self, placement: Placement, model: ModelInfo) -> None:
        self.shape = {t.name: t.shape for t in model.tensors}
        self.device = placement.tensor_devices

    def has(self, name: str) -> bool:
        return name in self.shape

    def rows(self, name: str) -> int:
        """The output width of a matrix (ggml ne[1])."""
        return self.shape[name][1]

    def dev(self, name: str) -> str | None:
        return self.device.get(name) if name in self.shape else None


def reserve_graph(placement: Placement, model: ModelInfo, settings: "MemorySettings", n_tokens: int) -> Graph:
    """The worst-case graph of one micro-batch of `n_tokens` tokens (see the module doc)."""
    g, w = Graph(), _Shapes(placement, model)
    T, E = n_tokens, model.n_embd
    embd_dev = w.dev("token_embd.weight") or CPU
    tokens = g.input(T * 4, CPU, "inp_tokens")
    inp = g.expand(g.add(E * T * F32, tokens, device=embd_dev, name="get_rows"))
    if settings.dialect != "ik":
        # mainline builds all three inputs of `build_inp_embd` and selects one (ggml_build_forward_select): the
        # embeddings input and the mixed batch's copy stay allocated (nothing reads them)
        g.expand(g.input(E * T * F32, CPU, "inp_embd"))
        mixed = g.add(E * T * F32, g.input(E * T * F32, CPU, "inp_mixed_embd"), name="dup")
        rows = g.add(E * T * F32, g.input(T * 4, CPU, "inp_mixed_tokens"), device=embd_dev, name="get_rows")
        slots = g.input(T * 8, CPU, "inp_mixed_slots")
        g.expand(g.view(mixed, reads=(rows, slots, mixed), name="set_rows"))  # ggml_set_rows: src = b, c, a
    inputs = _attention_inputs(g, model, settings, T)
    out_ids = g.input(T * 4, CPU, "inp_out_ids")
    n_run = model.n_layers - model.nextn_predict_layers
    for il in range(n_run):
        p = f"blk.{il}."
        layer_dev = placement.layer_devices[il]
        kv_dev = CPU if settings.kv_on_cpu else layer_dev
        residual = inp
        cur = _norm(g, w, inp, p + "attn_norm.weight", E * T)
        cur = _attention(g, w, model, settings, p, cur, inputs, T, kv_dev)
        if il == n_run - 1:  # only the output rows go on (all of them in the worst case)
            cur = g.add(E * T * F32, cur, out_ids, name="get_rows")
            residual = g.add(E * T * F32, residual, out_ids, name="get_rows")
        ffn_inp = g.add(E * T * F32, cur, residual, inplace=True, name="ffn_inp")
        norm_name = p + ("ffn_norm.weight" if w.has(p + "ffn_norm.weight") else "post_attention_norm.weight")
        cur = _norm(g, w, ffn_inp, norm_name, E * T)
        if w.has(p + "ffn_gate_inp.weight"):
            ffn = _moe(g, w, model, p, cur, T)
            if w.has(p + "ffn_up_shexp.weight"):
                shared = _dense_ffn(g, w, p, cur, T, "_shexp")
                ffn = g.add(E * T * F32, ffn, shared, inplace=True, name="ffn_out")
        else:
            ffn = _dense_ffn(g, w, p, cur, T, "")
        inp = g.add(E * T * F32, ffn, ffn_inp, inplace=True, name="l_out")
    cur = _norm(g, w, inp, "output_norm.weight", E * T)
    out_name = "output.weight" if w.has("output.weight") else "token_embd.weight"
    logits = g.expand(g.add(model.vocab_size * T * F32, cur, device=w.dev(out_name), name="result_output"))
    g.nodes[logits].is_output = True
    return g


def _attention_inputs(g: Graph, model: ModelInfo, settings: "MemorySettings", T: int) -> dict[str, int]:
    """Positions, the mask [n_kv, n_tokens] (f16 for flash attention, else f32), the cache rows to write (a
    transposed V cache, without flash attention: one index per element) and, in mainline with a quantized
    cache, the Hadamard rotations (`llama_kv_cache`: n_rot_k = 64 doubled while it divides the head,
    n_rot_v = 64)."""
    fa, n_kv = settings.flash_attn, settings.n_ctx
    n_embd_v = model.n_head_kv * model.head_dim_v
    out = {"pos": g.input(T * 4, CPU, "inp_pos"),
           "k_idxs": g.input(T * 8, CPU, "k_idxs"),
           "v_idxs": g.input(T * 8 * (1 if fa else n_embd_v), CPU, "v_idxs")}
    out["mask"] = g.input(n_kv * T * (2 if fa else 4), CPU, "kq_mask")
    if settings.dialect != "ik":
        if settings.cache_type_k not in UNROTATED and model.head_dim_k % 64 == 0:
            n_rot = 64
            while model.head_dim_k % (2 * n_rot) == 0:
                n_rot *= 2
            out["k_rot"] = g.input(n_rot * n_rot * F32, CPU, "k_rot")
        if settings.cache_type_v not in UNROTATED and model.head_dim_v % 64 == 0:
            out["v_rot"] = g.input(64 * 64 * F32, CPU, "v_rot")
    return out


def _norm(g: Graph, w: _Shapes, x: int, weight: str, n: int) -> int:
    """rms_norm (in place where the input has no other reader), then the multiplication by its weight."""
    cur = g.add(n * F32, x, inplace=True, name="norm")
    return g.add(n * F32, cur, device=w.dev(weight), inplace=True, name=weight) if w.has(weight) else cur


def _matmul(g: Graph, w: _Shapes, weight: str, x: int, n_tokens: int) -> int:
    out = g.add(w.rows(weight) * n_tokens * F32, x, device=w.dev(weight), name=weight)
    bias = weight.replace(".weight", ".bias")
    if w.has(bias):
        out = g.add(w.rows(weight) * n_tokens * F32, out, device=w.dev(bias), inplace=True, name=bias)
    return out


def _attention(g: Graph, w: _Shapes, model: ModelInfo, settings: "MemorySettings", p: str, x: int, inputs: dict,
               T: int, kv_dev: str) -> int:
    """Q, K, V (+bias, per-head norm, rope), mainline's Hadamard rotation of a quantized cache's rows, the rows
    written into the cache, attention against all n_kv cells, the output projection."""
    H, D, Dv, Hkv, n_kv = model.n_head, model.head_dim_k, model.head_dim_v, model.n_head_kv, settings.n_ctx
    fa = settings.flash_attn
    q = _matmul(g, w, p + "attn_q.weight", x, T)
    k = _matmul(g, w, p + "attn_k.weight", x, T)
    v = _matmul(g, w, p + "attn_v.weight", x, T)
    heads = []
    for cur, norm in ((q, "attn_q_norm.weight"), (k, "attn_k_norm.weight")):
        n_bytes = g.nodes[cur].n_bytes
        cur = g.view(cur, name="reshape")
        if w.has(p + norm):
            cur = _norm(g, w, cur, p + norm, n_bytes // F32)
        heads.append(g.add(n_bytes, cur, inputs["pos"], inplace=True, name="rope"))
    q, k = heads
    if "k_rot" in inputs:
        q = g.add(g.nodes[q].n_bytes, inputs["k_rot"], g.view(q, name="reshape"), name="hadamard q")
        k = g.add(g.nodes[k].n_bytes, inputs["k_rot"], g.view(k, name="reshape"), name="hadamard k")
    if "v_rot" in inputs:
        v = g.add(g.nodes[v].n_bytes, inputs["v_rot"], g.view(v, name="reshape"), name="hadamard v")
    g.expand(q), g.expand(v), g.expand(k)   # "added to the graph together so that they are not reordered"
    # the layer's cache: read in place, or copied whole where attention runs on another device (ik on RPC)
    k_cache = g.external(int(n_kv * Hkv * D * CACHE_TYPE_BYTES[settings.cache_type_k.lower()]), kv_dev, "cache_k")
    v_cache = g.external(int(n_kv * Hkv * Dv * CACHE_TYPE_BYTES[settings.cache_type_v.lower()]), kv_dev, "cache_v")
    g.expand(g.add(0, k, inputs["k_idxs"], k_cache, device=kv_dev, name="set_rows k"))
    g.expand(g.add(0, v, inputs["v_idxs"], v_cache, device=kv_dev, name="set_rows v"))
    q = g.view(q, name="permute")
    k_view, v_view = g.view(k_cache, name="k"), g.view(v_cache, name="v")
    if fa:
        cur = g.add(Dv * H * T * F32, q, k_view, v_view, inputs["mask"], name="fattn")
    else:
        kq = g.add(n_kv * T * H * F32, k_view, q, name="kq")
        kq = g.add(n_kv * T * H * F32, kq, inputs["mask"], inplace=True, name="kq_soft_max")
        kqv = g.add(Dv * T * H * F32, v_view, kq, name="kqv")
        cur = g.add(Dv * H * T * F32, g.view(kqv, name="permute"), name="kqv_out")
    if "v_rot" in inputs:
        cur = g.add(Dv * H * T * F32, inputs["v_rot"], g.view(cur, name="reshape"), name="hadamard out")
    return _matmul(g, w, p + "attn_output.weight", g.view(cur, name="reshape"), T)


def _moe(g: Graph, w: _Shapes, model: ModelInfo, p: str, x: int, T: int) -> int:
    E, X, K = model.n_embd, model.n_experts, model.n_experts_used
    F = w.rows(p + "ffn_up_exps.weight")
    logits = _matmul(g, w, p + "ffn_gate_inp.weight", x, T)
    probs = g.add(X * T * F32, logits, inplace=True, name="probs")  # soft_max or sigmoid
    select = probs
    if w.has(p + "exp_probs_b.bias"):
        select = g.add(X * T * F32, probs, device=w.dev(p + "exp_probs_b.bias"), name="selection_probs")
    top = g.add(X * T * 4, select, name="argsort")
    selected = g.view(top, name="top_k")
    weights = g.add(K * T * F32, g.view(probs, name="reshape"), selected, name="weights")
    total = g.add(T * F32, weights, name="weights_sum")
    total = g.add(T * F32, total, inplace=True, name="weights_sum_clamped")
    weights = g.expand(g.add(K * T * F32, weights, total, inplace=True, name="weights_norm"))
    cur = g.view(x, name="reshape")
    up = g.add(F * K * T * F32, cur, selected, device=w.dev(p + "ffn_up_exps.weight"), name="ffn_moe_up")
    gate = g.add(F * K * T * F32, cur, selected, device=w.dev(p + "ffn_gate_exps.weight"), name="ffn_moe_gate")
    act = g.add(F * K * T * F32, gate, up, name="ffn_moe_swiglu")
    down = g.add(E * K * T * F32, act, selected, device=w.dev(p + "ffn_down_exps.weight"), name="ffn_moe_down")
    down = g.expand(g.add(E * K * T * F32, down, weights, inplace=True, name="ffn_moe_weighted"))
    views = [g.expand(g.view(down, name=f"expert {i}")) for i in range(K)]
    out = views[0]
    for view in views[1:]:
        out = g.expand(g.add(E * T * F32, out, view, inplace=True, name="ffn_moe_out"))
    return out


def _dense_ffn(g: Graph, w: _Shapes, p: str, x: int, T: int, suffix: str) -> int:
    up = _matmul(g, w, f"{p}ffn_up{suffix}.weight", x, T)
    gate = _matmul(g, w, f"{p}ffn_gate{suffix}.weight", x, T)
    act = g.add(g.nodes[up].n_bytes, gate, up, name="swiglu")
    return _matmul(g, w, f"{p}ffn_down{suffix}.weight", act, T)
