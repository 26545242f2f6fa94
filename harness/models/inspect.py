"""What is in a GGUF MoE model, and how many bytes each part takes: `inspect_model(path) -> ModelInfo`.

The same summary can be made from a synthetic preset's tensor list (`inspect_preset`) without
writing the file, so tests and planners can reason about many-GB presets.

The file's metadata and tensor table are read by `harness.models.gguf_file` (types the installed `gguf`
package does not know, such as ik_llama.cpp's IQ4_KS, are sized from the file's layout); this module groups
the tensors and sums their bytes.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.models.attention import AttentionShape, attention_shape
from harness.models.preset_tensors import preset_tensors
from harness.models.presets import get_preset
from harness.models.shards import read_shards
from harness.models.tensor_groups import GROUP_NAMES, TensorGroup, classify_tensor, ffn_matrix, layer_index


@dataclass(frozen=True)
class TensorRecord:
    """One tensor: name, ggml type name, shape (ggml order, row length first) and bytes. `offset` is where its
    data starts in its GGUF file (absolute byte offset; None for records made from a tensor list) and `file` that
    file (the shard holding it, for a split model): engines map, per file, the span that holds their CPU
    tensors, so predicting those spans needs both."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    n_bytes: int
    offset: int | None = None
    file: str | None = None

    @property
    def group(self) -> TensorGroup:
        return classify_tensor(self.name)

    @property
    def layer(self) -> int | None:
        return layer_index(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type_name, "shape": list(self.shape), "bytes": self.n_bytes,
                "offset": self.offset, "file": self.file, "group": self.group.value, "layer": self.layer, "ffn_matrix": ffn_matrix(self.name)}


@dataclass
class LayerInfo:
    index: int
    bytes_by_group: dict[str, int]
    is_mtp: bool = False  # a NextN/MTP prediction layer: not run for ordinary decoding

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_group.values())

    @property
    def has_routed_experts(self) -> bool:
        return self.bytes_by_group[TensorGroup.ROUTED_EXPERTS.value] > 0


@dataclass
class ModelInfo:
    """Summary of a MoE model. All sizes are in bytes.

    `active_bytes_per_token` is the weight bytes one decoded token reads: every tensor outside the
    routed experts (attention, router, shared experts, dense FFNs, norms, other) of the non-MTP
    layers, plus each layer's routed-expert bytes times n_experts_used / n_experts, plus the whole
    output matrix (all logits are computed; with tied embeddings that is token_embd), plus one row
    of token_embd (the embedding lookup reads one row: token_embd bytes / vocab_size).
    """

    architecture: str
    name: str
    n_layers: int
    n_experts: int
    n_experts_used: int
    n_leading_dense_layers: int
    n_shared_experts: int
    n_embd: int
    context_length: int
    vocab_size: int
    nextn_predict_layers: int
    quant_bytes: dict[str, int]
    bytes_by_group: dict[str, int]
    layers: list[LayerInfo]
    tensor_bytes_total: int
    active_bytes_per_token: int
    tensors: list[TensorRecord] = field(repr=False)
    path: str | None = None             # the model's (first) file: what the engines are given
    file_size_bytes: int | None = None  # on disk, over all its files
    files: list[str] = field(default_factory=list)  # every file, in order: the shards of a split model
    n_head: int = 0                     # attention geometry, for the KV cache the planner predicts
    n_head_kv: int = 0
    head_dim_k: int = 0
    head_dim_v: int = 0
    attention: AttentionShape = field(default_factory=AttentionShape)  # what each layer caches (KV or state)

    @property
    def embeddings_bytes(self) -> int:
        return self.bytes_by_group[TensorGroup.EMBEDDINGS.value]

    @property
    def output_bytes(self) -> int:
        return self.bytes_by_group[TensorGroup.OUTPUT.value]

    @property
    def moe_layers(self) -> list[int]:
        """Indices of the layers that have routed experts and run: not the NextN/MTP layers, which the engines
        skip (docs/ENGINE_FLAGS.md, "NextN/MTP layers")."""
        return [layer.index for layer in self.layers if layer.has_routed_experts and not layer.is_mtp]

    def to_dict(self, include_tensors: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path, "file_size_bytes": self.file_size_bytes, "files": list(self.files),
            "architecture": self.architecture, "name": self.name,
            "n_layers": self.n_layers, "n_experts": self.n_experts, "n_experts_used": self.n_experts_used,
            "n_leading_dense_layers": self.n_leading_dense_layers, "n_shared_experts": self.n_shared_experts,
            "n_embd": self.n_embd, "context_length": self.context_length, "vocab_size": self.vocab_size,
            "nextn_predict_layers": self.nextn_predict_layers, "moe_layers": self.moe_layers,
            "attention": self.attention.to_dict(),
            "quant_bytes": dict(self.quant_bytes), "bytes_by_group": dict(self.bytes_by_group),
            "embeddings_bytes": self.embeddings_bytes, "output_bytes": self.output_bytes,
            "tensor_bytes_total": self.tensor_bytes_total, "active_bytes_per_token": self.active_bytes_per_token,
            "layers": [{"index": layer.index, "is_mtp": layer.is_mtp, "total_bytes": layer.total_bytes,
                        "bytes_by_group": dict(layer.bytes_by_group)} for layer in self.layers],
        }
        if include_tensors:
            out["tensors"] = [t.to_dict() for t in self.tensors]
        return out


def _empty_groups() -> dict[str, int]:
    return {name: 0 for name in GROUP_NAMES}


def _shared_experts_from_shapes(tensors: list[TensorRecord]) -> int:
    """How many routed experts wide the shared expert is (ERNIE: 2), from the up matrices' widths; at least 1."""
    shexp = next((t for t in tensors if t.name.endswith("ffn_up_shexp.weight") and len(t.shape) == 2), None)
    exps = next((t for t in tensors if t.name.endswith("ffn_up_exps.weight") and len(t.shape) == 3), None)
    if shexp is None or exps is None or not exps.shape[1]:
        return 1
    return max(1, round(shexp.shape[1] / exps.shape[1]))


def summarize(tensors: list[TensorRecord], metadata: dict[str, Any], path: str | None = None,
              file_size_bytes: int | None = None) -> ModelInfo:
    """Build a ModelInfo from tensor records and GGUF metadata (keys as in the file, e.g.
    `qwen3moe.expert_count`); missing hyper-parameters are derived from the tensors."""
    arch = str(metadata.get("general.architecture", "unknown"))

    def key(name: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{name}", default)
        return max(value) if isinstance(value, list) and value else value

    by_name = {t.name: t for t in tensors}
    routed = [t for t in tensors
              if t.group is TensorGroup.ROUTED_EXPERTS and len(t.shape) == 3 and t.name.endswith(".weight")]
    n_experts = int(key("expert_count", routed[0].shape[2] if routed else 0) or 0)
    n_experts_used = int(key("expert_used_count", 0) or 0)
    token_embd = by_name.get("token_embd.weight")
    vocab_size = int(key("vocab_size", 0) or metadata.get("tokenizer.ggml.tokens.count", 0)
                     or (token_embd.shape[1] if token_embd and len(token_embd.shape) > 1 else 0))
    n_embd = int(key("embedding_length", token_embd.shape[0] if token_embd else 0) or 0)
    layer_ids = sorted({t.layer for t in tensors if t.layer is not None})
    n_layers = int(key("block_count", (layer_ids[-1] + 1) if layer_ids else 0) or 0)
    nextn = int(key("nextn_predict_layers", 0) or 0)

    layers = {i: LayerInfo(i, _empty_groups(), is_mtp=i >= n_layers - nextn) for i in range(n_layers)}
    for i in layer_ids:
        layers.setdefault(i, LayerInfo(i, _empty_groups()))
    totals = _empty_groups()
    quant: Counter[str] = Counter()
    for t in tensors:
        totals[t.group.value] += t.n_bytes
        quant[t.type_name] += t.n_bytes
        if t.layer is not None:
            layers[t.layer].bytes_by_group[t.group.value] += t.n_bytes

    leading_dense = key("leading_dense_block_count")
    if leading_dense is None and int(key("interleave_moe_layer_step", 0) or 0) > 1:
        leading_dense = 0  # llama4: dense layers between the MoE layers, none "leading"
    if leading_dense is None:
        leading_dense = 0
        for layer in (layers[i] for i in sorted(layers)):
            if layer.has_routed_experts or layer.total_bytes == 0:
                break
            leading_dense += 1
    shared = key("expert_shared_count")
    if shared is None:
        shared = _shared_experts_from_shapes(tensors) if totals[TensorGroup.SHARED_EXPERTS.value] else 0

    n_head = int(key("attention.head_count", 0) or 0)
    n_head_kv = int(key("attention.head_count_kv", n_head) or n_head)
    routed_fraction = (n_experts_used / n_experts) if n_experts and n_experts_used else 1.0
    active = 0
    for layer in layers.values():
        if layer.is_mtp:
            continue
        for group, n_bytes in layer.bytes_by_group.items():
            active += round(n_bytes * routed_fraction) if group == TensorGroup.ROUTED_EXPERTS.value else n_bytes
    active += sum(t.n_bytes for t in tensors if t.layer is None and t.group in (TensorGroup.NORMS, TensorGroup.OTHER))
    embd_bytes = totals[TensorGroup.EMBEDDINGS.value]
    if totals[TensorGroup.OUTPUT.value]:
        active += totals[TensorGroup.OUTPUT.value]
    elif token_embd is not None:  # tied embeddings: token_embd is also the output matrix
        active += token_embd.n_bytes
    active += embd_bytes // vocab_size if vocab_size else 0

    attention = attention_shape(metadata, set(by_name), n_layers, n_embd)
    return ModelInfo(
        architecture=arch, name=str(metadata.get("general.name", "")),
        n_layers=n_layers, n_experts=n_experts, n_experts_used=n_experts_used,
        n_leading_dense_layers=int(leading_dense), n_shared_experts=int(shared), n_embd=n_embd,
        context_length=int(key("context_length", 0) or 0), vocab_size=vocab_size, nextn_predict_layers=nextn,
        quant_bytes=dict(quant.most_common()), bytes_by_group=totals,
        layers=[layers[i] for i in sorted(layers)], tensor_bytes_total=sum(t.n_bytes for t in tensors),
        active_bytes_per_token=active, tensors=list(tensors), path=path, file_size_bytes=file_size_bytes,
        n_head=n_head, n_head_kv=n_head_kv, head_dim_k=attention.head_dim_k, head_dim_v=attention.head_dim_v,
        attention=attention,
    )


def inspect_model(path: str | os.PathLike[str]) -> ModelInfo:
    """Read the GGUF at `path`; a split model (`name-00002-of-00003.gguf`: any of its shards) is read whole,
    its metadata from the first shard, every shard's tensors with their file. UserError (one line, naming the
    file) if it or a shard is missing, not a GGUF file, or truncated/corrupt."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    if magic != b"GGUF":
        raise UserError(f"{path}: not a GGUF file")
    files = read_shards(path)
    records = [TensorRecord(t.name, t.type_name, t.shape, t.n_bytes, t.offset, str(f.path))
               for f in files for t in f.header.tensors]
    first = str(files[0].path)
    info = summarize(records, files[0].header.metadata, path=first,
                     file_size_bytes=sum(f.size_bytes for f in files))
    info.files = [str(f.path) for f in files]
    return info


def preset_metadata(preset_name: str) -> dict[str, Any]:
    """The GGUF metadata a synthetic model of the preset carries (the keys `summarize` reads)."""
    p = get_preset(preset_name)
    a = p.architecture
    meta: dict[str, Any] = {
        "general.architecture": a, "general.name": f"moebench synthetic {p.name}",
        f"{a}.block_count": p.n_layers, f"{a}.expert_count": p.n_experts,
        f"{a}.expert_used_count": p.n_experts_used, f"{a}.embedding_length": p.n_embd,
        f"{a}.context_length": p.context_length, "tokenizer.ggml.tokens.count": p.vocab_size,
        f"{a}.attention.head_count": p.n_head, f"{a}.attention.head_count_kv": p.n_head_kv,
        f"{a}.attention.key_length": p.head_dim, f"{a}.attention.value_length": p.head_dim,
    }
    meta[f"{a}.rope.dimension_count"] = p.rope_dim or p.head_dim
    if p.kv_lora_rank:  # as synth writes it (harness.models.synth)
        meta.update({f"{a}.attention.key_length": p.kv_lora_rank + (p.rope_dim or 0),
                     f"{a}.attention.value_length": p.kv_lora_rank,
                     f"{a}.attention.key_length_mla": p.head_dim, f"{a}.attention.value_length_mla": p.value_head_dim,
                     f"{a}.attention.q_lora_rank": p.q_lora_rank, f"{a}.attention.kv_lora_rank": p.kv_lora_rank})
    else:
        meta[f"{a}.attention.value_length"] = p.value_head_dim
    if p.sliding_window:
        meta[f"{a}.attention.sliding_window"] = p.sliding_window
    if p.moe_layer_step:
        meta[f"{a}.interleave_moe_layer_step"] = p.moe_layer_step
    if p.ssm_d_state:
        meta.update({f"{a}.ssm.conv_kernel": p.ssm_d_conv, f"{a}.ssm.state_size": p.ssm_d_state,
                     f"{a}.ssm.group_count": p.ssm_n_group, f"{a}.ssm.time_step_rank": p.ssm_n_v_heads,
                     f"{a}.ssm.inner_size": p.ssm_d_state * p.ssm_n_v_heads,
                     f"{a}.full_attention_interval": p.full_attention_interval})
    if a in ("glm4moe", "deepseek2", "ernie4_5-moe"):
        meta[f"{a}.leading_dense_block_count"] = p.n_leading_dense_layers
        meta[f"{a}.expert_shared_count"] = p.n_shared_experts
    if a == "glm4moe":
        meta[f"{a}.nextn_predict_layers"] = p.nextn_predict_layers
    return meta


def inspect_preset(preset_name: str) -> ModelInfo:
    """The ModelInfo a synthetic model of the preset would have, computed from its tensor list."""
    specs = preset_tensors(get_preset(preset_name))
    records = [TensorRecord(s.name, s.type_name, s.shape, s.n_bytes) for s in specs]
    return summarize(records, preset_metadata(preset_name))
