"""The header of a GGUF file: its metadata and its tensor table (`read_gguf_header(path) -> GGUFHeader`).

Read here, with `struct` over a read-only mmap, rather than with `gguf.GGUFReader`, which builds a numpy view of
every tensor's data (so a type the installed `gguf` package does not know, such as ik_llama.cpp's IQ4_KS, or a
cut file, makes it raise) and parses every item of every metadata array (seconds for a 150k-token vocabulary).
Only gguf's public constants are used (value types, ggml types and their block sizes, the versions it reads).
The format: magic, version, tensor count, metadata count, the metadata (key, value type, value), the tensor
infos (name, dimensions, ggml type, offset from the data section), padding to `general.alignment`.

Types the installed `gguf` package does not know are still accepted: their sizes are taken from the gap to the
next tensor's data offset, and their names from ik_llama.cpp's ggml.h where known.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, READER_SUPPORTED_VERSIONS, GGMLQuantizationType, GGUFValueType

from harness.errors import UserError

BIG_ARRAY_ITEMS = 1024  # longer metadata arrays (the vocabulary, scores, merges) keep only their length

# ggml types of ik_llama.cpp (ggml/include/ggml.h) that mainline's gguf package does not list
_IK_TYPE_NAMES = {
    133: "Q6_0", 134: "IQ1_BN", 135: "IQ2_BN", 137: "IQ2_K", 138: "IQ3_K", 139: "IQ4_K", 140: "IQ5_K",
    141: "IQ6_K", 144: "IQ4_KS", 145: "IQ2_KS", 146: "IQ4_KSS", 152: "IQ5_KS", 153: "IQ2_KT",
    154: "IQ3_KT", 155: "IQ4_KT", 156: "IQ3_KS", 157: "IQ2_KL", 158: "IQ1_KT", 202: "Q4_0_R8",
    206: "Q5_0_R4", 208: "Q8_0_R8", 210: "Q2_K_R4", 211: "Q3_K_R4", 212: "Q4_K_R4", 213: "Q5_K_R4",
    214: "Q6_K_R4", 220: "IQ4_NL_R4", 223: "IQ4_XS_R8",
}

_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
    GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d", GGUFValueType.BOOL: "?",
}


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of the tensor table: name, ggml type name, shape (ggml order, row length first), bytes, and
    the absolute byte offset of its data in the file."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    """`metadata`: every key of the file (`GGUF.*` bookkeeping excepted) with its value; an array's items as a
    flat list, and its length under `<key>.count` (an array of more than BIG_ARRAY_ITEMS items has only that)."""

    metadata: dict[str, Any]
    tensors: list[GGUFTensor]


class _Cursor:
    """Reads values of one byte order from a buffer, moving forward; struct.error past its end."""

    def __init__(self, buffer, order: str):
        self.buffer, self.order, self.offset = buffer, order, 0

    def scalar(self, fmt: str):
        (value,) = struct.unpack_from(self.order + fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.scalar("Q")
        if self.offset + length > len(self.buffer):
            raise ValueError("a string runs past the end of the file")
        text = str(self.buffer[self.offset:self.offset + length], encoding="utf-8")
        self.offset += length
        return text

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.scalar("Q")
            self.offset += length
        if self.offset > len(self.buffer):
            raise ValueError(f"metadata array of {count} items runs past the end of the file")

    def value(self, value_type: int) -> tuple[list[Any] | Any, int | None]:
        """A metadata value of `value_type`: (value, None) for a scalar or string; (items, count) for an array,
        items a flat list of its scalars (nested arrays flattened), or None past BIG_ARRAY_ITEMS."""
        gtype = GGUFValueType(value_type)
        if gtype == GGUFValueType.STRING:
            return self.string(), None
        if gtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[gtype]), None
        if gtype != GGUFValueType.ARRAY:
            raise ValueError(f"unknown metadata value type {gtype}")
        item_type, count = GGUFValueType(self.scalar("I")), self.scalar("Q")
        if count > BIG_ARRAY_ITEMS and item_type != GGUFValueType.ARRAY:
            if item_type == GGUFValueType.STRING:
                self.skip_strings(count)
            elif item_type in _SCALAR_FORMATS:
                self.offset += count * struct.calcsize(_SCALAR_FORMATS[item_type])
                if self.offset > len(self.buffer):
                    raise ValueError(f"metadata array of {count} items runs past the end of the file")
            else:
                raise ValueError(f"unknown metadata value type {item_type}")
            return None, count
        items: list[Any] = []
        for _ in range(count):
            value, _count = self.value(item_type)
            items.extend(value if item_type == GGUFValueType.ARRAY else [value])
        return (items if len(items) <= BIG_ARRAY_ITEMS else None), len(items)


def _byte_order(buffer) -> str:
    """`<` or `>`: a file written on a machine of the other byte order reads as a version with zero low bits."""
    version = struct.unpack_from("<I", buffer, 4)[0]
    order = ">" if version & 0xFFFF == 0 else "<"
    version = struct.unpack_from(order + "I", buffer, 4)[0]
    if version not in READER_SUPPORTED_VERSIONS:
        raise ValueError(f"GGUF version {version} is not supported")
    return order


def _tensor(name: str, type_id: int, dims: tuple[int, ...], offset: int, next_offset: int) -> GGUFTensor:
    n_elements = 1
    for d in dims:
        n_elements *= d
    try:
        ggml_type = GGMLQuantizationType(type_id)
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        return GGUFTensor(name, ggml_type.name, dims, n_elements // block * type_size, offset)
    except (ValueError, KeyError):  # a type this gguf package does not know: size from the layout
        return GGUFTensor(name, _IK_TYPE_NAMES.get(type_id, f"type{type_id}"), dims, next_offset - offset, offset)


def _parse(path: Path, buffer) -> GGUFHeader:
    cursor = _Cursor(buffer, _byte_order(buffer))
    cursor.offset = 8
    n_tensors, n_keys = cursor.scalar("Q"), cursor.scalar("Q")
    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    for _ in range(n_keys):
        key = cursor.string()
        if key in types:
            raise ValueError(f"metadata key {key} appears twice")
        types[key] = cursor.scalar("I")
        value, count = cursor.value(types[key])
        if count is not None:
            metadata[f"{key}.count"] = count
        if value is not None:
            metadata[key] = value
    table = []
    for _ in range(n_tensors):
        name = cursor.string()
        dims = tuple(cursor.scalar("Q") for _ in range(cursor.scalar("I")))
        table.append((name, cursor.scalar("I"), dims, cursor.scalar("Q")))
    alignment = GGUF_DEFAULT_ALIGNMENT
    if "general.alignment" in metadata:
        alignment = metadata["general.alignment"]
        if types["general.alignment"] != GGUFValueType.UINT32 or alignment == 0 or alignment & (alignment - 1):
            raise ValueError("general.alignment must be a non-zero power of two (uint32)")
    data_start = -(-cursor.offset // alignment) * alignment
    file_size = len(buffer)
    by_offset = sorted(table, key=lambda row: row[3])
    next_offset = {row[0]: data_start + after[3] for row, after in zip(by_offset, by_offset[1:])}
    tensors = []
    for name, type_id, dims, relative in table:
        offset = data_start + relative
        tensor = _tensor(name, type_id, dims, offset, next_offset.get(name, file_size))
        if offset + tensor.n_bytes > file_size or tensor.n_bytes < 0:
            raise UserError(f"{path}: truncated GGUF: tensor {name} ends at byte {offset + tensor.n_bytes}, "
                            f"the file has {file_size} bytes")
        tensors.append(tensor)
    return GGUFHeader(metadata, tensors)


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """The metadata and tensor table of the GGUF file at `path` (its tensor data is not read). UserError, one
    line naming the file, when it is truncated or corrupt."""
    path = Path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            return _parse(path, buffer)
    except UserError:
        raise
    except Exception as exc:  # a cut or corrupt file fails in many ways: struct.error, ValueError, UnicodeError
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"{path}: truncated or corrupt GGUF ({detail[:200]})") from None
