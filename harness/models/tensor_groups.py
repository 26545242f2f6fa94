"""Classify GGUF tensor names into the groups that placement decisions are made about.

Groups (`TensorGroup`):

- `attention`: every `attn_*` projection, bias and sink, including MLA (`attn_q_a`, `attn_q_b`,
  `attn_kv_a_mqa`, `attn_kv_b`, `attn_k_b`, `attn_v_b`), fused `attn_qkv`, `attn_sinks`
  (gpt-oss), `attn_gate`, DeepSeek-V3.2 `indexer.*`, and the recurrent layers that replace attention
  (qwen3next / qwen35moe gated delta-net, Mamba): `ssm_*` (`ssm_in`, `ssm_conv1d`, `ssm_a`, `ssm_dt`,
  `ssm_ba`, `ssm_out`, ...; `ssm_norm` is a norm).
- `router`: `ffn_gate_inp` (weight and bias) and `exp_probs_b` (the expert selection bias).
- `routed_experts`: `ffn_{gate,up,down,gate_up}_exps` (weights, biases and scales, e.g. gpt-oss
  `ffn_gate_exps.bias`), `*_chexps`, and old Mixtral per-expert tensors `ffn_gate.<E>.weight`.
- `shared_experts`: `*_shexp`, including qwen2moe's shared-expert gate `ffn_gate_inp_shexp`.
- `dense_ffn`: non-expert `ffn_gate`, `ffn_up`, `ffn_down` (leading dense layers, llama4's
  interleaved dense layers).
- `norms`: every `*norm*` tensor, including `output_norm` (a norm, tiny; it is not the output
  matrix) and the MTP layer's `nextn.enorm`/`nextn.hnorm`.
- `embeddings`: `token_embd` (and `per_layer_token_embd`, `position_embd`, `token_types`).
- `output`: the output (lm-head) matrix `output.weight` and its bias.
- `other`: everything else (rope_freqs, RWKV tensors, MTP projections `nextn.eh_proj`, ...).

`layer_index` parses the `blk.N.` prefix; tensors outside blocks have no layer. `ffn_matrix` says
which FFN matrix a tensor is (`gate`, `up`, `down`, `gate_up`) for experts, shared experts and
dense FFNs alike, so placement code can pick e.g. only the `down` expert matrices.
"""

from __future__ import annotations

import re
from enum import Enum


class TensorGroup(str, Enum):
    ATTENTION = "attention"
    ROUTER = "router"
    ROUTED_EXPERTS = "routed_experts"
    SHARED_EXPERTS = "shared_experts"
    DENSE_FFN = "dense_ffn"
    NORMS = "norms"
    EMBEDDINGS = "embeddings"
    OUTPUT = "output"
    OTHER = "other"


GROUP_NAMES: tuple[str, ...] = tuple(g.value for g in TensorGroup)

_BLOCK_PREFIX = re.compile(r"^blk\.(\d+)\.")
# the part of a name that says what the tensor is: drop "blk.N." and the final ".weight"/".bias"/...
_SUFFIX = re.compile(r"\.(weight|bias|scale|scales|bias_s|weight_s|input_scale)$")
_ROUTED = re.compile(r"^ffn_(gate_up|gate|up|down)_(ch)?exps$")
_MIXTRAL_PER_EXPERT = re.compile(r"^ffn_(gate|up|down)\.\d+$")
_SHARED = re.compile(r"^ffn_(gate_up|gate|up|down)_shexp$")
_DENSE = re.compile(r"^ffn_(gate_up|gate|up|down)$")
_FFN_MATRIX = re.compile(r"^ffn_(gate_up|gate|up|down)(?:_(?:ch)?exps|_shexp|\.\d+)?$")
_EMBEDDINGS = {"token_embd", "per_layer_token_embd", "position_embd", "token_types"}


def layer_index(name: str) -> int | None:
    """N for a tensor named `blk.N.…`, None for tensors outside the repeating blocks."""
    match = _BLOCK_PREFIX.match(name)
    return int(match.group(1)) if match else None


def tensor_stem(name: str) -> str:
    """`blk.3.ffn_up_exps.weight` -> `ffn_up_exps`; `output.weight` -> `output`."""
    return _SUFFIX.sub("", _BLOCK_PREFIX.sub("", name))


def classify_tensor(name: str) -> TensorGroup:
    """The group a GGUF tensor name belongs to (see the module docstring)."""
    stem = tensor_stem(name)
    in_block = layer_index(name) is not None
    if "norm" in stem:
        return TensorGroup.NORMS
    if not in_block:
        if stem in _EMBEDDINGS:
            return TensorGroup.EMBEDDINGS
        if stem == "output":
            return TensorGroup.OUTPUT
        return TensorGroup.OTHER
    if _SHARED.match(stem) or stem == "ffn_gate_inp_shexp":
        return TensorGroup.SHARED_EXPERTS
    if _ROUTED.match(stem) or _MIXTRAL_PER_EXPERT.match(stem):
        return TensorGroup.ROUTED_EXPERTS
    if stem in ("ffn_gate_inp", "exp_probs_b"):
        return TensorGroup.ROUTER
    if _DENSE.match(stem):
        return TensorGroup.DENSE_FFN
    if stem.startswith(("attn_", "indexer.", "ssm_")):
        return TensorGroup.ATTENTION
    return TensorGroup.OTHER


def ffn_matrix(name: str) -> str | None:
    """`gate`, `up`, `down` or `gate_up` for an FFN matrix (routed, shared or dense), else None."""
    match = _FFN_MATRIX.match(tensor_stem(name))
    return match.group(1) if match else None
