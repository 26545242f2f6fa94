"""Write random-weight MoE GGUF models with the `gguf` package's GGUFWriter, streaming.

The writer gets every tensor's info first (`add_tensor_info`), writes header, metadata and tensor
infos, then each tensor's data one at a time, so memory stays at one random chunk whatever the
model size. A tensor's data is one random chunk (at most `CHUNK_BYTES`, seeded by the model seed
and the tensor name) repeated to the tensor's size, so writing a many-GB model is I/O bound. The
same preset and seed always give a byte-identical file. The file is written in a hidden folder
beside its destination and moved there at the end: an interrupted write never leaves a partial file
under the final name. A `SplitRule` writes the model as shards, by GGUFWriter's own splitting (the
files gguf-split writes: `split.*` keys in each, the metadata in the first).
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gguf import ExpertGatingFuncType, GGUFWriter, LlamaFileType

from harness import paths
from harness.errors import UserError
from harness.models.blocks import block_geometry, constant_f32_bytes, random_tensor_bytes
from harness.models.preset_tensors import FILL_ONES, TensorSpec, tensor_specs_bytes, preset_tensors
from harness.models.presets import MoePreset, get_preset
from harness.models.shards import SplitRule, shard_path
from harness.models.vocab import BOS_ID, EOS_ID, UNK_ID, build_vocabulary
from harness.units import MIB

CHUNK_BYTES = 4 * MIB
"""Largest random chunk generated per tensor; bigger tensors repeat it."""

_FILE_TYPES = {"Q8_0": LlamaFileType.MOSTLY_Q8_0, "Q4_K": LlamaFileType.MOSTLY_Q4_K_M,
               "Q5_K": LlamaFileType.MOSTLY_Q5_K_M, "Q6_K": LlamaFileType.MOSTLY_Q6_K,
               "Q4_0": LlamaFileType.MOSTLY_Q4_0, "F16": LlamaFileType.MOSTLY_F16}

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes of tensor data written so far, total bytes of tensor data)."""


class _RepeatedChunk:
    """Tensor data made of one chunk repeated: has the `nbytes` and `tofile` that
    `GGUFWriter.write_tensor_data` uses, without materializing the whole tensor."""

    def __init__(self, chunk: np.ndarray, nbytes: int, on_written: Callable[[int], None] | None = None):
        self.chunk = chunk
        self.nbytes = nbytes
        self._on_written = on_written

    def tofile(self, fout: BinaryIO) -> None:
        view = memoryview(self.chunk)
        remaining = self.nbytes
        while remaining:
            n = min(remaining, len(view))
            fout.write(view[:n])
            remaining -= n
            if self._on_written:
                self._on_written(n)


def _tensor_data(spec: TensorSpec, seed: int) -> np.ndarray:
    """The chunk `spec`'s data repeats: deterministic in (seed, tensor name)."""
    if spec.fill == FILL_ONES:
        return constant_f32_bytes(1.0, spec.n_bytes // 4)
    bytes_per_block = block_geometry(spec.ggml_type)[1]
    chunk_bytes = min(spec.n_bytes, max(bytes_per_block, CHUNK_BYTES // bytes_per_block * bytes_per_block))
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
    return random_tensor_bytes(spec.ggml_type, chunk_bytes, rng)


def _add_metadata(writer: GGUFWriter, preset: MoePreset, seed: int) -> None:
    p = preset
    writer.add_name(f"moebench synthetic {p.name} seed {seed}")
    writer.add_string("moebench.preset", p.name)
    writer.add_uint32("moebench.seed", seed)
    if p.matrix_type in _FILE_TYPES:
        writer.add_file_type(_FILE_TYPES[p.matrix_type])
    writer.add_quantization_version(2)
    writer.add_context_length(p.context_length)
    writer.add_embedding_length(p.n_embd)
    writer.add_block_count(p.n_layers)
    writer.add_feed_forward_length(p.dense_ff or p.expert_ff * p.n_experts_used)
    writer.add_head_count(p.n_head)
    writer.add_head_count_kv(p.n_head_kv)
    if p.kv_lora_rank:  # MLA as mainline converts it: one KV head, K = latent + rope, V = latent
        writer.add_key_length(p.kv_lora_rank + (p.rope_dim or 0))
        writer.add_value_length(p.kv_lora_rank)
        writer.add_key_length_mla(p.head_dim)
        writer.add_value_length_mla(p.value_head_dim)
        writer.add_q_lora_rank(p.q_lora_rank)
        writer.add_kv_lora_rank(p.kv_lora_rank)
    else:
        writer.add_key_length(p.head_dim)
        writer.add_value_length(p.value_head_dim)
    writer.add_rope_dimension_count(p.rope_dim or p.head_dim)
    writer.add_rope_freq_base(p.rope_freq_base)
    writer.add_layer_norm_rms_eps(p.rms_norm_eps)
    writer.add_expert_count(p.n_experts)
    writer.add_expert_used_count(p.n_experts_used)
    writer.add_expert_feed_forward_length(p.expert_ff)
    if p.architecture in ("glm4moe", "deepseek2"):
        writer.add_expert_shared_count(p.n_shared_experts)
        writer.add_leading_dense_block_count(p.n_leading_dense_layers)
        writer.add_expert_weights_scale(1.0)  # required by ik_llama.cpp
        writer.add_expert_weights_norm(True)
        writer.add_expert_gating_func(ExpertGatingFuncType(p.expert_gating or ExpertGatingFuncType.SIGMOID))
    if p.architecture == "glm4moe":
        writer.add_nextn_predict_layers(p.nextn_predict_layers)
    if p.architecture == "minimax-m2":
        writer.add_expert_gating_func(ExpertGatingFuncType(p.expert_gating))
    if p.sliding_window:
        writer.add_sliding_window(p.sliding_window)
    if p.moe_layer_step:
        writer.add_interleave_moe_layer_step(p.moe_layer_step)
    if p.architecture == "ernie4_5-moe":
        writer.add_leading_dense_block_count(p.n_leading_dense_layers)
        writer.add_expert_shared_feed_forward_length(p.expert_ff * p.n_shared_experts)
    if p.ssm_d_state:
        writer.add_expert_shared_feed_forward_length(p.expert_ff * p.n_shared_experts)
        writer.add_ssm_conv_kernel(p.ssm_d_conv)
        writer.add_ssm_state_size(p.ssm_d_state)
        writer.add_ssm_group_count(p.ssm_n_group)
        writer.add_ssm_time_step_rank(p.ssm_n_v_heads)
        writer.add_ssm_inner_size(p.ssm_d_state * p.ssm_n_v_heads)
        writer.add_full_attention_interval(p.full_attention_interval)
    if p.architecture == "qwen35moe":  # multi-axis rope: the text uses the first sections (sum: rope_dim / 2)
        half = (p.rope_dim or p.head_dim) // 2
        writer.add_rope_dimension_sections([half - 2 * (half // 3), half // 3, half // 3, 0])
    vocab = build_vocabulary(p.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.token_types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def _check_free_space(folder: Path, needed_bytes: int) -> None:
    free_bytes = shutil.disk_usage(folder).free
    if free_bytes < needed_bytes + 256 * MIB:
        raise UserError(f"not enough disk space in {folder}: the model needs {needed_bytes / 1e9:.1f} GB, "
                        f"{free_bytes / 1e9:.1f} GB free")


def write_synthetic_model(out_path: str | os.PathLike[str], preset: str, seed: int = 0,
                          progress: ProgressCallback | None = None, split: SplitRule | None = None) -> Path:
    """Write the random-weight model `preset` (a name in PRESETS) with `seed` to `out_path`; return the path.
    With `split`, the model is written as shards beside it (`out-00001-of-00003.gguf`, ... by GGUFWriter's own
    splitting, as gguf-split writes them) and the first shard's path is returned.

    Raises UserError for an unknown preset or too little disk space.
    """
    spec_preset = get_preset(preset)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    specs = preset_tensors(spec_preset)
    total_bytes = tensor_specs_bytes(specs)
    _check_free_space(out_path.parent, total_bytes)
    n_shards = 1 + max(split.shard_of_each([t.n_bytes for t in specs])) if split else 1
    final = [shard_path(out_path, i, n_shards) for i in range(n_shards)] if split else [out_path]

    # every file is written in a hidden folder beside its final name, then moved there, the first file last
    staging = out_path.parent / f".{out_path.name}.{os.getpid()}.partial"
    staging.mkdir()
    written = 0

    def on_written(n: int) -> None:
        nonlocal written
        written += n
        if progress:
            progress(written, total_bytes)

    limits = {"split_max_tensors": split.max_tensors, "split_max_size": split.max_bytes} if split else {}
    named = shard_path(out_path, 0, 1) if split else out_path  # GGUFWriter names the shards after it
    writer = GGUFWriter(staging / named.name, spec_preset.architecture, **limits)
    try:
        _add_metadata(writer, spec_preset, seed)
        for spec in specs:
            # numpy shape order is the reverse of ggml's; the dtype only needs to be "not uint8"
            writer.add_tensor_info(spec.name, tuple(reversed(spec.shape)), np.dtype(np.float32), spec.n_bytes,
                                   raw_dtype=spec.ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for spec in specs:
            data = _RepeatedChunk(_tensor_data(spec, seed), spec.n_bytes, on_written)
            writer.write_tensor_data(data)  # type: ignore[arg-type]
        writer.close()
        for path in reversed(final):
            os.replace(staging / path.name, path)
    except BaseException:
        writer.close()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final[0]


def preset_digest(preset: MoePreset) -> str:
    """Eight hex digits of the preset's definition: a file written from an earlier definition of the same name
    (a layer added, a type changed) is not taken for it."""
    return zlib.crc32(repr(sorted(asdict(preset).items())).encode()).to_bytes(4, "big").hex()


def _stem(preset: str, seed: int) -> str:
    return f"{preset}-{preset_digest(get_preset(preset))}-seed{seed}"


def synthetic_model_path(preset: str, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                         split: SplitRule | None = None) -> Path:
    """Where `synthetic_model` keeps the model: `<cache>/models/<preset>-<digest>-seed<seed>.gguf` (`preset_digest`);
    split, the first shard `<preset>-<digest>-seed<seed>-<split tag>-00001-of-0000N.gguf` (N from the preset's
    tensors)."""
    root = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    if split is None:
        return root / "models" / f"{_stem(preset, seed)}.gguf"
    shards = split.shard_of_each([t.n_bytes for t in preset_tensors(get_preset(preset))])
    return shard_path(root / "models" / f"{_stem(preset, seed)}-{split.tag}.gguf", 0, 1 + max(shards))


def synthetic_model(preset: str, seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                    progress: ProgressCallback | None = None, split: SplitRule | None = None) -> Path:
    """The cached synthetic model `preset`/`seed` (split by `split`: its first shard), written first if it is not
    there yet (idempotent; a split model is there when its first shard is, the one written last).

    `cache_dir` defaults to `harness.paths.cache_dir()` (`$MOEBENCH_CACHE`, else ~/.cache/moebench).
    """
    get_preset(preset)
    path = synthetic_model_path(preset, seed, cache_dir, split)
    if path.is_file():
        return path
    base = path.parent / f"{_stem(preset, seed)}-{split.tag}.gguf" if split else path
    return write_synthetic_model(base, preset, seed, progress=progress, split=split)
