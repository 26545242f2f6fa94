"""Random but valid raw tensor data for each ggml type, fast.

A quantized ggml block is a few scale fields (f16 `d`, `dmin`, packed sub-block scales) plus quant
bits. The quant bits can be anything; the scale fields must be finite and small or the model
produces inf/NaN. For every supported type we fill a block with random bytes and then overwrite
the scale fields with constants chosen so that the dequantized weights have a standard deviation
of about `WEIGHT_STD` (≈0.02) and a mean near zero. Block geometry (elements per block, bytes per
block) comes from `gguf.GGML_QUANT_SIZES`; the byte layouts follow ggml's `block_*` structs
(ggml-common.h), which `gguf.quants` mirrors, so the tests can dequantize what we make.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

T = GGMLQuantizationType

WEIGHT_STD = 0.02
"""Target standard deviation of the dequantized random weights."""


def _f16_bytes(value: float) -> np.ndarray:
    return np.array([value], dtype="<f2").view(np.uint8)


# One entry per supported quantized type: (byte offset, bytes) overlays written on every block,
# after the random fill. The comment gives the dequantization formula and the resulting std.
_SCALE_OVERLAYS: dict[GGMLQuantizationType, list[tuple[int, np.ndarray]]] = {
    # w = d * q, q int8 uniform (std ~74)
    T.Q8_0: [(0, _f16_bytes(WEIGHT_STD / 74))],
    # w = d * (q - 8), q 0..15 (std ~4.6)
    T.Q4_0: [(0, _f16_bytes(WEIGHT_STD / 4.6))],
    # w = d * q + m, q 0..15; m = -7.5 d centres it
    T.Q4_1: [(0, _f16_bytes(WEIGHT_STD / 4.6)), (2, _f16_bytes(-7.5 * WEIGHT_STD / 4.6))],
    # w = d * (q - 16), q 0..31 (std ~9.2)
    T.Q5_0: [(0, _f16_bytes(WEIGHT_STD / 9.2))],
    T.Q5_1: [(0, _f16_bytes(WEIGHT_STD / 9.2)), (2, _f16_bytes(-15.5 * WEIGHT_STD / 9.2))],
    # scales[16] @0 (scale | min << 4), qs[64] @16, d @80, dmin @82; w = d*sc*q - dmin*m, q 0..3.
    # sc = m = 1 and dmin = 1.5 d centres it: w = d (q - 1.5), std 1.12 d.
    T.Q2_K: [(0, np.full(16, 0x11, np.uint8)), (80, _f16_bytes(WEIGHT_STD / 1.12)),
             (82, _f16_bytes(1.5 * WEIGHT_STD / 1.12))],
    # hmask[32], qs[64], scales[12] (random 6-bit, minus 32), d @108; w = d*(sc-32)*q, q -4..3.
    T.Q3_K: [(108, _f16_bytes(WEIGHT_STD / 42))],
    # d @0, dmin @2, scales[12] @4, qs @16. Packed 6-bit scales all set to sc = m = 8
    # ([8]*8 + [0x88]*4), dmin = 7.5 d: w = 8 d (q - 7.5), std 37 d.
    T.Q4_K: [(0, _f16_bytes(WEIGHT_STD / 37)), (2, _f16_bytes(7.5 * WEIGHT_STD / 37)),
             (4, np.array([8] * 8 + [0x88] * 4, np.uint8))],
    # as Q4_K with 5-bit q: w = 8 d (q - 15.5), std 74 d.
    T.Q5_K: [(0, _f16_bytes(WEIGHT_STD / 74)), (2, _f16_bytes(15.5 * WEIGHT_STD / 74)),
             (4, np.array([8] * 8 + [0x88] * 4, np.uint8))],
    # ql[128], qh[64], scales[16] int8 @192, d @208; w = d*sc*(q-32). sc = 4: std 74 d.
    T.Q6_K: [(192, np.full(16, 4, np.uint8)), (208, _f16_bytes(WEIGHT_STD / 74))],
    # d @0, qs[16]; w = d * kvalues_iq4nl[q] (values -127..113, std ~66).
    T.IQ4_NL: [(0, _f16_bytes(WEIGHT_STD / 66))],
    # d @0, scales_h u16 @2, scales_l[4] @4, qs[128] @8; 6-bit sub-scales set to 33 (-32 = 1).
    T.IQ4_XS: [(0, _f16_bytes(WEIGHT_STD / 66)), (2, np.array([0xAA, 0xAA], np.uint8)),
               (4, np.full(4, 0x11, np.uint8))],
    # e8m0 exponent @0, qs[16]; w = 2^(e-128) * kvalues_mxfp4[q] (doubled e2m1, std ~5.7). e=120.
    T.MXFP4: [(0, np.array([120], np.uint8))],
}

_FLOAT_DTYPES = {T.F32: np.dtype("<f4"), T.F16: np.dtype("<f2")}

SUPPORTED_TYPES: tuple[GGMLQuantizationType, ...] = (*_FLOAT_DTYPES, T.BF16, *_SCALE_OVERLAYS)
"""Types `random_tensor_bytes` can fill. Grid-based i-quants (IQ1/IQ2/IQ3) and ternary types are not."""


def block_geometry(ggml_type: GGMLQuantizationType) -> tuple[int, int]:
    """(elements per block, bytes per block) for a ggml type."""
    return GGML_QUANT_SIZES[ggml_type]


def tensor_nbytes(ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of `shape` (ggml order: shape[0] is the row length) stored as `ggml_type`.

    Raises ValueError when the row length is not a multiple of the type's block size.
    """
    elems_per_block, bytes_per_block = block_geometry(ggml_type)
    if shape[0] % elems_per_block:
        raise ValueError(f"row length {shape[0]} is not a multiple of {ggml_type.name}'s block size {elems_per_block}")
    n_elements = int(np.prod(shape, dtype=np.int64))
    return n_elements // elems_per_block * bytes_per_block


def random_tensor_bytes(ggml_type: GGMLQuantizationType, nbytes: int, rng: np.random.Generator) -> np.ndarray:
    """`nbytes` (a whole number of blocks) of valid random data of `ggml_type`, as a flat uint8 array."""
    elems_per_block, bytes_per_block = block_geometry(ggml_type)
    if nbytes % bytes_per_block:
        raise ValueError(f"{nbytes} bytes is not a whole number of {ggml_type.name} blocks ({bytes_per_block} bytes)")
    if ggml_type in _FLOAT_DTYPES:
        values = rng.standard_normal(nbytes // bytes_per_block, dtype=np.float32)
        return (values * WEIGHT_STD).astype(_FLOAT_DTYPES[ggml_type]).view(np.uint8)
    if ggml_type == T.BF16:
        values = (rng.standard_normal(nbytes // 2, dtype=np.float32) * WEIGHT_STD).view(np.uint32)
        return (values >> 16).astype("<u2").view(np.uint8)
    overlays = _SCALE_OVERLAYS.get(ggml_type)
    if overlays is None:
        supported = ", ".join(t.name for t in SUPPORTED_TYPES)
        raise ValueError(f"cannot generate random {ggml_type.name} data; supported: {supported}")
    blocks = np.frombuffer(rng.bytes(nbytes), dtype=np.uint8).reshape(-1, bytes_per_block).copy()
    for offset, value in overlays:
        blocks[:, offset:offset + len(value)] = value
    return blocks.reshape(-1)


def constant_f32_bytes(value: float, n_elements: int) -> np.ndarray:
    """An F32 tensor filled with `value` (norm weights are 1.0), as a flat uint8 array."""
    return np.full(n_elements, value, dtype="<f4").view(np.uint8)
