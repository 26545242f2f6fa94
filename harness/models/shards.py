"""A model in several GGUF files (shards), as `gguf-split` and `gguf.GGUFWriter(split_max_tensors=...,
split_max_size=...)` write them: `name-00001-of-00003.gguf`, `name-00002-of-00003.gguf`, ... Every shard
carries `split.no` (0-based), `split.count` and `split.tensors.count` (the model's tensors over all shards);
the first also carries the model's metadata; each has its own tensor table and data section.

- `read_shards(path)`: given any shard (or an unsplit file), every file of the model with its header, in order;
  the shard names derived from the given one's the way llama.cpp does (src/llama-model-loader.cpp
  `llama_get_list_splits`: the prefix before `-%05d-of-%05d.gguf`, then `llama_split_path` for each index).
- `SplitRule`: how the synthetic writer splits a tensor list (GGUFWriter.add_tensor_info's rule) and the shard
  each tensor lands in, so an unwritten split preset's layout can be planned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.errors import UserError
from harness.models.gguf_file import GGUFHeader, read_gguf_header
from harness.units import MIB

SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS_COUNT = "split.no", "split.count", "split.tensors.count"
_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def shard_path(base: Path, index: int, count: int) -> Path:
    """The file of shard `index` (0-based) of `count` for a model named `base` (`name.gguf` or any of its
    shards): `name-0000K-of-0000N.gguf` (gguf's SHARD_NAME_FORMAT, llama.cpp's llama_split_path); `base`
    itself, less a shard suffix, when there is one file."""
    match = _SHARD_NAME.match(base.name)
    stem = match["prefix"] if match else base.stem
    if count == 1:
        return base.with_name(f"{stem}.gguf")
    return base.with_name(f"{stem}-{index + 1:05d}-of-{count:05d}.gguf")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: its path, header and size on disk."""

    path: Path
    header: GGUFHeader
    size_bytes: int


def _split_keys(header: GGUFHeader) -> tuple[int, int]:
    meta = header.metadata
    return int(meta.get(SPLIT_NO, 0) or 0), int(meta.get(SPLIT_COUNT, 1) or 1)


def read_shards(path: Path) -> list[ModelFile]:
    """Every file of the model `path` belongs to, the first shard first (one file for an unsplit model).
    UserError, one line, naming the file: a shard missing, a shard name the others cannot be derived from, a
    shard of another split (its `split.no` / `split.count` disagree), or a tensor count that does not add up."""
    header = read_gguf_header(path)
    given_no, count = _split_keys(header)
    if count <= 1:
        return [ModelFile(path, header, path.stat().st_size)]
    match = _SHARD_NAME.match(path.name)
    if not match or int(match["no"]) != given_no + 1 or int(match["count"]) != count:
        raise UserError(f"{path}: shard {given_no + 1} of {count} by its split keys, but its name does not end in "
                        f"-{given_no + 1:05d}-of-{count:05d}.gguf, so its other shards cannot be found")
    files = []
    for index in range(count):
        shard = shard_path(path, index, count)
        if index == given_no:
            files.append(ModelFile(path, header, path.stat().st_size))
            continue
        if not shard.is_file():
            raise UserError(f"{shard}: missing shard {index + 1} of {count} of the model {path.name}")
        shard_header = read_gguf_header(shard)
        if _split_keys(shard_header) != (index, count):
            no, n = _split_keys(shard_header)
            raise UserError(f"{shard}: its split keys say shard {no + 1} of {n}, expected {index + 1} of {count}")
        files.append(ModelFile(shard, shard_header, shard.stat().st_size))
    expected = files[0].header.metadata.get(SPLIT_TENSORS_COUNT)
    found = sum(len(f.header.tensors) for f in files)
    seen: dict[str, Path] = {}
    for f in files:
        for t in f.header.tensors:
            if t.name in seen:
                raise UserError(f"{f.path}: tensor {t.name} is also in {seen[t.name].name}")
            seen[t.name] = f.path
    if expected is not None and int(expected) != found:
        raise UserError(f"{files[0].path}: split.tensors.count says {expected} tensors, its {count} shards hold {found}")
    return files


@dataclass(frozen=True)
class SplitRule:
    """How a model is split, as gguf-split's `--split-max-tensors` / `--split-max-size` and GGUFWriter's
    `split_max_tensors` / `split_max_size`: a new shard starts when the current one holds `max_tensors` tensors
    or the next tensor would take its data past `max_mib` MiB (0: no limit). A shard holds at least one tensor."""

    max_tensors: int = 0
    max_mib: int = 0

    def __post_init__(self) -> None:
        if self.max_tensors < 0 or self.max_mib < 0 or not (self.max_tensors or self.max_mib):
            raise UserError("a split needs a positive max_tensors or max_mib")

    @property
    def max_bytes(self) -> int:
        return self.max_mib * MIB

    @property
    def tag(self) -> str:
        """Its name in file names and labels: `split-40t`, `split-6mib`, `split-40t-6mib`."""
        parts = ([f"{self.max_tensors}t"] if self.max_tensors else []) + ([f"{self.max_mib}mib"] if self.max_mib else [])
        return "split-" + "-".join(parts)

    def shard_of_each(self, tensor_bytes: Sequence[int]) -> list[int]:
        """The shard (0-based) each tensor of a plan, in writing order, lands in."""
        out: list[int] = []
        shard, count, size = 0, 0, 0
        for n_bytes in tensor_bytes:
            if count and ((self.max_tensors and count >= self.max_tensors)
                          or (self.max_mib and size + n_bytes > self.max_bytes)):
                shard, count, size = shard + 1, 0, 0
            out.append(shard)
            count, size = count + 1, size + n_bytes
        return out
