"""The path one forward pass takes through the devices: the model's operations in graph order, each on the
device ggml's scheduler gives it, and the backend segments ("graph splits") that makes.

ggml's scheduler (`ggml-backend.cpp`, `ggml_backend_sched_split_graph`) puts an operation that reads a weight
on the device holding the weight, one that reads the KV cache on the cache's device, and spreads the
operations without either (norm arithmetic, softmax, top-k, the residual adds) from their neighbours, the
accelerator first. So the segments are the runs of equal devices in the sequence of weight and cache reads,
in the order the engines build a layer: attention norm, q/k/v projections, the attention itself (the KV
cache), the output projection, FFN norm, router, routed experts (up/gate, then down), shared experts or the
dense FFN. The pass starts on the CPU (the embedding lookup: `token_embd` stays in system RAM) and the logits
come back to the host at the end.

Op offload: an accelerator whose backend offloads operations (CUDA, Vulkan, Metal; not RPC, whose
`offload_op` is NULL in both engines) takes an operation on CPU-held weights when its batch is large enough,
copying the weights over the bus for every micro-batch. Mainline: `get_op_batch_size(op) >= 32` (tokens;
`GGML_OP_OFFLOAD_MIN_BATCH`); ik: the same for dense operations, and for expert matrices (MUL_MAT_ID) only
when `tokens * experts_used >= 32 * experts`. The embedding lookup (GET_ROWS) is never offloaded.

Predicted segment counts are checked against the engines' own `graph splits` (tests/test_perf_model.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import TensorGroup, classify_tensor, ffn_matrix, layer_index, tensor_stem
from harness.plan.compute_buffers import OFFLOAD_MIN_BATCH
from harness.plan.placement import CPU, Placement, is_accelerator, loaded_tensors

# where a tensor's operation comes in a layer's forward pass; the KV cache read is stage 2
_ATTN_IN, _Q_NORM, _K_NORM, _KV, _ATTN_OUT, _FFN_NORM, _ROUTER = 1.0, 1.2, 1.4, 2.0, 3.0, 5.0, 6.0
_EXPERTS_IN, _EXPERTS_DOWN, _FFN_IN, _FFN_DOWN, _POST = 7.0, 8.0, 9.0, 10.0, 11.0
# the steps without weights of their own (residual adds, RMS norms before a weight's multiply, rope) run where
# the layer's residual stream is, the cache's device, when that is an accelerator: observed with mainline on
# the RPC rig (GGML_SCHED_DEBUG) for a layer whose weights are all in RAM while its KV cache is on the
# accelerator: the RMS norm starting the layer, the q/k norms, the residual add after the output projection
# and the one ending the layer each cross back (10 segments per qwen3moe layer, 6 per glm4moe layer)
_GLUE_START, _GLUE_AFTER_Q, _GLUE_AFTER_K, _GLUE_AFTER_ATTN, _GLUE_END = -1.0, 1.1, 1.3, 4.0, 12.0
_POST_NORM = re.compile(r"post_ffw_norm|layer_output_norm|ffn_post_norm")
# multi-head latent attention (deepseek2, src/models/deepseek2.cpp), seen the same way (GGML_SCHED_DEBUG, a layer's
# weights in RAM, its cache on the accelerator): attn_q_a, [RMS norm], attn_q_a_norm, attn_q_b, attn_k_b (the
# query's absorption), attn_kv_a_mqa, [RMS norm], attn_kv_a_norm, [rope, concat, cache, attention], attn_v_b,
# attn_output: the two bracketed RMS norms before the latent norms' weights cross back like the q/k norms
_MLA_STAGES = {"attn_q_a": 1.0, "attn_q_a_norm": 1.06, "attn_q_b": 1.07, "attn_k_b": 1.08, "attn_kv_a_mqa": 1.09,
               "attn_kv_a_norm": 1.15, "attn_kv_b": 1.16, "attn_v_b": 2.5}
_GLUE_BEFORE_Q_A_NORM, _GLUE_BEFORE_KV_A_NORM = 1.05, 1.1
# a gated delta-net layer (qwen3next, src/models/qwen3next.cpp), seen the same way: [conv state read], attn_qkv,
# [conv input: the state concatenated], ssm_conv1d, ssm_ba, ssm_a, ssm_dt, [delta net on the state], ssm_norm,
# attn_gate, ssm_out: the bracketed steps run where the recurrent state is (the layer's cache device)
_RECURRENT_STAGES = {"attn_qkv": 1.0, "ssm_conv1d": 1.05, "ssm_ba": 1.05, "ssm_beta": 1.05, "ssm_alpha": 1.05,
                     "ssm_a": 1.05, "ssm_dt": 1.05,
                     "ssm_norm": 2.5, "attn_gate": 2.6, "ssm_out": _ATTN_OUT}
_GLUE_STATE_READ, _GLUE_CONV_INPUT = 0.5, 1.02


@dataclass(frozen=True)
class Op:
    """One step of the pass: the weights (or KV cache) it reads and the device that holds them."""

    device: str
    tensors: tuple[str, ...]
    layer: int | None
    experts: bool = False       # routed-expert matrices (MUL_MAT_ID)
    kv: bool = False            # the attention over the KV cache (no weights of its own)
    lookup: bool = False        # the embedding lookup (GET_ROWS: never offloaded)
    logits: bool = False        # the output matrix (one row of logits per output token)
    borrows: bool = False       # runs on the cache's device but reads a weight held elsewhere (gpt-oss's
    #                             attn_sinks in RAM read by the attention on the accelerator): ggml starts a new
    #                             split for an operation whose weight is on another backend (ggml-backend.cpp)


def _stage(name: str) -> float:
    stem = tensor_stem(name)
    group = classify_tensor(name)
    if group is TensorGroup.ROUTED_EXPERTS:
        return _EXPERTS_DOWN if ffn_matrix(name) == "down" else _EXPERTS_IN
    if group is TensorGroup.ROUTER:
        return _ROUTER
    if group in (TensorGroup.SHARED_EXPERTS, TensorGroup.DENSE_FFN):
        return _FFN_DOWN if ffn_matrix(name) == "down" else _FFN_IN
    if _POST_NORM.search(stem):
        return _POST
    if stem in ("ffn_norm", "post_attention_norm"):  # glm4moe's and gpt-oss's FFN norm is post_attention_norm
        return _FFN_NORM
    if stem == "attn_norm":
        return 0.0
    if stem in ("attn_output", "attn_out"):
        return _ATTN_OUT
    if stem == "attn_sinks":
        return _KV
    if stem in _MLA_STAGES:
        return _MLA_STAGES[stem]
    if stem in _RECURRENT_STAGES:
        return _RECURRENT_STAGES[stem]
    if stem in ("attn_q_norm", "attn_k", "attn_k_b"):
        return _Q_NORM
    if stem in ("attn_k_norm", "attn_v", "attn_v_b"):
        return _K_NORM
    return _ATTN_IN


def graph_ops(model: ModelInfo, placement: Placement, kv_devices: tuple[str, ...] | None = None) -> list[Op]:
    """The pass's weight and cache reads in graph order, each with the device holding it. `kv_devices` is where
    each layer's KV cache is (default: where the placement runs the layer; an engine may differ: ik on an RPC
    device keeps it on the CPU)."""
    kv = kv_devices if kv_devices is not None else placement.layer_devices
    by_layer: dict[int, list[tuple[float, str, str]]] = {}
    head: list[Op] = []
    tail: list[tuple[int, str]] = []
    for tensor in loaded_tensors(model):
        name = tensor.name
        device = placement.tensor_devices[name]
        layer = layer_index(name)
        group = classify_tensor(name)
        if layer is None:
            if group is TensorGroup.EMBEDDINGS:
                head.append(Op(device, (name,), None, lookup=True))
            elif group in (TensorGroup.NORMS, TensorGroup.OUTPUT):
                tail.append((0 if group is TensorGroup.NORMS else 1, name))
            continue
        if group is TensorGroup.OTHER:
            continue  # rope factors and such: read by operations placed elsewhere
        by_layer.setdefault(layer, []).append((_stage(name), name, device))
    ops = list(head)
    for layer in sorted(by_layer):
        stems = {tensor_stem(name) for _, name, _ in by_layer[layer]}
        entries = by_layer[layer] + [(_KV, "", kv[layer])]
        if is_accelerator(kv[layer]):
            glue = [_GLUE_START, _GLUE_AFTER_ATTN, _GLUE_END]
            glue += [_GLUE_AFTER_Q] if "attn_q_norm" in stems else []
            glue += [_GLUE_AFTER_K] if "attn_k_norm" in stems else []
            glue += [_GLUE_BEFORE_Q_A_NORM] if "attn_q_a_norm" in stems else []
            glue += [_GLUE_BEFORE_KV_A_NORM] if "attn_kv_a_norm" in stems else []
            glue += [_GLUE_STATE_READ, _GLUE_CONV_INPUT] if "ssm_conv1d" in stems else []
            entries += [(stage, "", kv[layer]) for stage in glue]
        for stage, name, device in sorted(entries):
            experts = stage in (_EXPERTS_IN, _EXPERTS_DOWN)
            if tensor_stem(name) == "attn_sinks":  # read by the attention, which runs where the cache is
                ops.append(Op(kv[layer], (name,), layer, kv=True, borrows=device != kv[layer]))
                continue
            if ops and ops[-1].device == device and ops[-1].layer == layer and ops[-1].experts == experts \
                    and not ops[-1].kv and name:
                ops[-1] = Op(device, ops[-1].tensors + (name,), layer, experts)
            else:
                ops.append(Op(device, (name,) if name else (), layer, experts, kv=stage == _KV))
    for _, name in sorted(tail):
        is_output = classify_tensor(name) is TensorGroup.OUTPUT
        ops.append(Op(placement.tensor_devices[name], (name,), None, logits=is_output))
    return ops


def offloads(op: Op, *, dialect: str, tokens: int, outputs: int, model: ModelInfo, enabled: bool) -> bool:
    """True when an accelerator that offloads operations takes `op` (weights on the CPU) for a batch of
    `tokens` tokens of which `outputs` produce logits."""
    if not enabled or op.device != CPU or op.kv or op.lookup or not op.tensors:
        return False
    batch = outputs if op.logits else tokens
    if batch < OFFLOAD_MIN_BATCH:
        return False
    if op.experts and dialect == "ik" and model.n_experts:
        return batch * model.n_experts_used >= OFFLOAD_MIN_BATCH * model.n_experts
    return True


def run_devices(ops: list[Op], accelerator: str, offloaded: set[int] = frozenset()) -> list[str]:
    """The device each op runs on: its own, or the accelerator for the ops in `offloaded` (by index)."""
    return [accelerator if i in offloaded else op.device for i, op in enumerate(ops)]


def segments(devices: list[str], ops: list[Op] | None = None) -> int:
    """Backend segments of a pass: runs of equal devices (what the engines log as graph splits), and given the
    ops, a new one at each op that borrows a weight from another device."""
    return sum(1 for i, d in enumerate(devices)
               if i == 0 or d != devices[i - 1] or (ops is not None and ops[i].borrows))


def detours(devices: list[str]) -> bool:
    """Whether a pass leaves the accelerator for the CPU in the middle and comes back (a CPU segment between two
    accelerator segments): CPU-held experts do, whole-layer splits do not."""
    first = next((i for i, d in enumerate(devices) if is_accelerator(d)), None)
    last = max((i for i, d in enumerate(devices) if is_accelerator(d)), default=None)
    return first is not None and any(d == CPU for d in devices[first:last])


def crossings(devices: list[str]) -> int:
    """Device changes a pass makes, counting the logits' way back to the host when the pass ends on an
    accelerator (the pass starts on the CPU with the embedding lookup)."""
    changes = segments(devices) - 1 if devices else 0
    if devices and devices[0] != CPU:
        changes += 1
    return changes + (1 if devices and is_accelerator(devices[-1]) else 0)
