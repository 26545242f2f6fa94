"""What each layer of a model keeps per token (a KV cache) or per sequence (a recurrent state), read from its
GGUF hyper-parameters, and how many bytes that is on each engine.

The rules, by architecture (docs/ENGINE_FLAGS.md, "KV cache and recurrent state", says where each comes from):

- Ordinary attention (qwen3moe, glm4moe, llama, llama4, ...): K and V, `n_head_kv x key_length` and
  `n_head_kv x value_length` elements per token, in the `-ctk` / `-ctv` types, on every layer.
- Multi-head latent attention (`deepseek2` with `kv_lora_rank`): the cache is the compressed latent. A file
  converted with `key_length_mla` (one KV head, K `kv_lora_rank + rope` wide, split `attn_k_b`/`attn_v_b`):
  mainline caches K only, `key_length` elements in `-ctk` (V is a view of it). ik always caches the latent,
  `kv_lora_rank + rope` elements: in `-ctk` with flash attention; without it in `-ctk` (`-mla 1`, plus a
  transposed V of `kv_lora_rank` elements in `-ctv`) or `-ctv` (`-mla 2`/`3`). A file without the fused
  `attn_kv_b` keeps the mode: ik computes `attn_kv_b` from `attn_k_b`/`attn_v_b` at load (`llm_prepare_mla`,
  "need to compute N wkv_b tensors", seen). An older file (fused `attn_kv_b`, no `key_length_mla`) is ordinary attention to
  mainline (`n_head_kv` heads of `key_length` / `value_length`); ik `-mla 0` too.
- Sliding-window layers (gpt-oss: `sliding_window`, every other layer from layer 0; llama4: chunked attention,
  8192 tokens, 3 layers of 4): mainline keeps
  `pad256(min(n_ctx, n_swa + n_ubatch))` cells there (the whole context with `--swa-full`); ik keeps the whole
  context on every layer.
- Recurrent layers (qwen3next, qwen35moe: every layer but each `full_attention_interval`-th): no KV cache;
  a recurrent state per sequence, f32: the conv state `(d_conv - 1) x (d_inner + 2 x n_group x d_state)` and
  the delta-net state, mainline `d_state x d_inner` (llama-hparams.cpp n_embd_r/n_embd_s, its `RS buffer`),
  ik `head_v^2 x n_v_heads` with head_v = d_inner / n_v_heads (llama-hparams.h n_embd_v_s, inside its KV
  buffer). The two agree when head_v = d_state, as in the Qwen3-Next and Qwen3.5 checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

CELL_PADDING = 256  # both engines pad the context (and mainline its SWA cache) to a multiple of 256 cells
MAINLINE, IK = "mainline", "ik"
IK_DEFAULT_MLA = 3  # ik common.h: mla_attn = 3


class CacheSettings(Protocol):
    """What sizes the cache (harness.plan.memory.MemorySettings has these)."""

    n_ctx: int
    n_ubatch: int
    cache_type_k: str
    cache_type_v: str
    flash_attn: bool
    dialect: str
    mla_mode: int | None
    swa_full: bool
    n_seq: int


@dataclass(frozen=True)
class AttentionShape:
    """A model's attention and cache geometry (all widths in elements)."""

    n_layers: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    head_dim_k: int = 0                 # `attention.key_length` as the file writes it
    head_dim_v: int = 0
    kv_lora_rank: int = 0               # MLA: the latent width; 0: no MLA
    q_lora_rank: int = 0
    rope_dim: int = 0                   # `rope.dimension_count`
    head_dim_k_mla: int = 0             # `attention.key_length_mla`: set in files converted for MLA
    head_dim_v_mla: int = 0
    has_fused_kv_b: bool = False        # the file has `attn_kv_b` (ik's -mla 2/3 need it)
    sliding_window: int = 0             # tokens a sliding-window layer attends to; 0: none
    swa_layers: tuple[int, ...] = ()    # the layers with a sliding window
    recurrent_layers: tuple[int, ...] = ()  # layers with a recurrent state instead of a KV cache
    ssm_d_conv: int = 0                 # recurrent layers' hyper-parameters (`ssm.*`)
    ssm_d_state: int = 0
    ssm_d_inner: int = 0
    ssm_n_group: int = 0
    ssm_n_v_heads: int = 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def recurrent_conv_elements(self) -> int:
        """f32 elements of one recurrent layer's conv state per sequence (mainline's R tensor)."""
        return max(self.ssm_d_conv - 1, 0) * (self.ssm_d_inner + 2 * self.ssm_n_group * self.ssm_d_state)

    def recurrent_state_elements(self, dialect: str = MAINLINE) -> int:
        """f32 elements of one recurrent layer's whole state per sequence (conv + delta-net state)."""
        if not self.recurrent_layers:
            return 0
        if dialect == IK and self.ssm_n_v_heads:
            head_v = self.ssm_d_inner // self.ssm_n_v_heads
            return self.recurrent_conv_elements + head_v * head_v * self.ssm_n_v_heads
        return self.recurrent_conv_elements + self.ssm_d_state * self.ssm_d_inner

    @property
    def latent_width(self) -> int:
        """Elements MLA caches per token per layer: the latent plus the rope part."""
        return self.kv_lora_rank + self.rope_dim

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (0, (), False)}
        out["swa_layers"] = list(self.swa_layers)
        out["recurrent_layers"] = list(self.recurrent_layers)
        return out


def _key(metadata: dict[str, Any], arch: str, name: str, default: Any = 0) -> Any:
    return metadata.get(f"{arch}.{name}", default)


def _first(value: Any) -> int:
    return int(value[0] if isinstance(value, list) and value else value or 0)


LLAMA4_CHUNK = 8192  # mainline src/models/llama4.cpp: chunked attention, n_swa = 8192 unless sliding_window is 0
_DEFAULT_SWA_PATTERN = {"gpt-oss": 2, "llama4": 4}


def sliding_window_of(arch: str, metadata: dict[str, Any]) -> int:
    """Tokens a sliding-window (or chunked-attention) layer keeps; 0: none."""
    value = _key(metadata, arch, "attention.sliding_window", None)
    if arch == "llama4":
        return 0 if value == 0 else LLAMA4_CHUNK
    return int(value or 0)


def swa_layers_of(arch: str, metadata: dict[str, Any], n_layers: int) -> tuple[int, ...]:
    """Which layers use a sliding window: the file's `sliding_window_pattern` (a list of flags, or n: every
    layer but each n-th), or the architecture's default (gpt-oss: 2, llama4: 4)."""
    if not sliding_window_of(arch, metadata):
        return ()
    pattern = _key(metadata, arch, "attention.sliding_window_pattern", None)
    if isinstance(pattern, list):
        return tuple(i for i, flag in enumerate(pattern[:n_layers]) if flag)
    n_pattern = int(pattern) if pattern is not None else _DEFAULT_SWA_PATTERN.get(arch, 0)
    return tuple(i for i in range(n_layers) if n_pattern == 0 or i % n_pattern < n_pattern - 1)


def recurrent_layers_of(arch: str, metadata: dict[str, Any], n_layers: int) -> tuple[int, ...]:
    """qwen3next / qwen35moe: the file's `attention.recurrent_layers` (flags per layer; mainline reads it first,
    ik does not), else every layer but each `full_attention_interval`-th (default 4) is recurrent."""
    if arch not in ("qwen3next", "qwen35moe"):
        return ()
    flags = _key(metadata, arch, "attention.recurrent_layers", None)
    if isinstance(flags, list):
        return tuple(i for i, flag in enumerate(flags[:n_layers]) if flag)
    interval = int(_key(metadata, arch, "full_attention_interval", 4) or 4)
    return tuple(i for i in range(n_layers) if (i + 1) % interval != 0)


def attention_shape(metadata: dict[str, Any], tensor_names: set[str], n_layers: int, n_embd: int) -> AttentionShape:
    """The AttentionShape of a GGUF (its metadata and tensor names; `n_layers` counts the MTP layers too)."""
    arch = str(metadata.get("general.architecture", ""))
    n_head = _first(_key(metadata, arch, "attention.head_count"))
    n_head_kv = _first(_key(metadata, arch, "attention.head_count_kv", n_head)) or n_head
    default_head = n_embd // n_head if n_head else 0
    recurrent = recurrent_layers_of(arch, metadata, n_layers)
    return AttentionShape(
        n_layers=n_layers, n_head=n_head, n_head_kv=n_head_kv,
        head_dim_k=int(_key(metadata, arch, "attention.key_length") or default_head),
        head_dim_v=int(_key(metadata, arch, "attention.value_length") or default_head),
        kv_lora_rank=int(_key(metadata, arch, "attention.kv_lora_rank") or 0),
        q_lora_rank=int(_key(metadata, arch, "attention.q_lora_rank") or 0),
        rope_dim=int(_key(metadata, arch, "rope.dimension_count") or 0),
        head_dim_k_mla=int(_key(metadata, arch, "attention.key_length_mla") or 0),
        head_dim_v_mla=int(_key(metadata, arch, "attention.value_length_mla") or 0),
        has_fused_kv_b=any(name.endswith("attn_kv_b.weight") for name in tensor_names),
        sliding_window=sliding_window_of(arch, metadata),
        swa_layers=swa_layers_of(arch, metadata, n_layers),
        recurrent_layers=recurrent,
        ssm_d_conv=int(_key(metadata, arch, "ssm.conv_kernel") or 0),
        ssm_d_state=int(_key(metadata, arch, "ssm.state_size") or 0),
        ssm_d_inner=int(_key(metadata, arch, "ssm.inner_size") or 0),
        ssm_n_group=int(_key(metadata, arch, "ssm.group_count") or 0),
        ssm_n_v_heads=int(_key(metadata, arch, "ssm.time_step_rank") or 0),
    )


def padded_cells(n: int) -> int:
    return (n + CELL_PADDING - 1) // CELL_PADDING * CELL_PADDING


def effective_mla_mode(shape: AttentionShape, settings: CacheSettings) -> int:
    """ik's MLA mode for this model: the setting (default 3). ik's fallback to 1 for a file without attn_kv_b
    (llama_kv_cache_init, "missing wkv_b tensor(s)") is not reached: llm_prepare_mla computes attn_kv_b first
    whenever the mode is 2 or 3; `-mla 0` on a file without attn_kv_b becomes 1 there."""
    mode = IK_DEFAULT_MLA if settings.mla_mode is None else settings.mla_mode
    return 1 if mode == 0 and not shape.has_fused_kv_b else mode


def cache_cells(shape: AttentionShape, layer: int, settings: CacheSettings) -> int:
    """Cells (tokens) layer `layer`'s KV cache holds."""
    if settings.dialect == MAINLINE and layer in shape.swa_layers and not settings.swa_full:
        # llama-kv-cache-iswa.cpp: size_swa = GGML_PAD(min(size_base, n_swa * n_seq + n_ubatch), 256)
        return min(settings.n_ctx, padded_cells(min(settings.n_ctx, shape.sliding_window * settings.n_seq
                                                    + settings.n_ubatch)))
    return settings.n_ctx


def kv_bytes_of_layer(shape: AttentionShape, layer: int, settings: CacheSettings, type_bytes) -> int:
    """Bytes of layer `layer`'s KV cache (0 for a recurrent layer). `type_bytes(name)`: bytes per element
    of a cache type."""
    if layer in shape.recurrent_layers:
        return 0
    cells = cache_cells(shape, layer, settings)
    k_bytes, v_bytes = type_bytes(settings.cache_type_k), type_bytes(settings.cache_type_v)
    if shape.is_mla:
        if settings.dialect == IK:
            mode = effective_mla_mode(shape, settings)
            if mode:
                if settings.flash_attn:
                    return int(cells * shape.latent_width * k_bytes)
                if mode == 1:
                    return int(cells * (shape.latent_width * k_bytes + shape.kv_lora_rank * v_bytes))
                return int(cells * shape.latent_width * v_bytes)
        elif shape.head_dim_k_mla:  # mainline, a file converted for MLA: K only
            return int(cells * shape.n_head_kv * shape.head_dim_k * k_bytes)
    return int(cells * shape.n_head_kv * (shape.head_dim_k * k_bytes + shape.head_dim_v * v_bytes))


def recurrent_bytes_of_layer(shape: AttentionShape, layer: int, settings: CacheSettings) -> int:
    """Bytes of layer `layer`'s recurrent state (f32, one per sequence)."""
    if layer not in shape.recurrent_layers:
        return 0
    return 4 * shape.recurrent_state_elements(settings.dialect) * max(1, settings.n_seq)


def _layer_list(layers: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in layers) if len(layers) <= 8 else f"{len(layers)} layers"


def describe(shape: AttentionShape) -> str:
    """One line: the attention and what it caches, for `moebench inspect`."""
    if shape.is_mla:
        kind = (f"MLA: latent {shape.kv_lora_rank} + rope {shape.rope_dim} cached per token and layer, "
                f"{shape.n_head} heads (K {shape.head_dim_k_mla or shape.head_dim_k} / "
                f"V {shape.head_dim_v_mla or shape.head_dim_v}), q_lora_rank {shape.q_lora_rank}")
        if not shape.head_dim_k_mla:
            kind += "; fused attn_kv_b (older conversion: mainline caches full K/V)"
        return kind
    text = f"{shape.n_head} heads, {shape.n_head_kv} KV heads, K {shape.head_dim_k} / V {shape.head_dim_v}"
    if shape.swa_layers:
        text += f"; sliding window {shape.sliding_window} on layers {_layer_list(shape.swa_layers)}"
    if shape.recurrent_layers:
        text += (f"; recurrent state ({4 * shape.recurrent_state_elements() / 1024:.0f} KiB per sequence) instead of "
                 f"a KV cache on layers {_layer_list(shape.recurrent_layers)}")
    return text
