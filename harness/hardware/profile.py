"""A box described rather than measured: one GPU (a card of `gpus.GPUS` by name, or its figures), the host's RAM
(type, speed and channels, or a bandwidth) and its cores. `moebench predict/tune --hardware` predict from it.

On the command line: `--gpu "RTX 4090" --ram ddr5-4800x2 --cores 16`; in a file (YAML):

    gpu: RTX 4090                 # or {name: ..., vram_gib: 24, memory_gb_s: 1008, pcie_gen: 4, pcie_lanes: 16}
    ram: ddr5-4800x2              # or {gb_s: 70}: a measured or known read bandwidth
    cores: 16
    upload_gb_s: 24               # optional: the host-to-GPU copy rate measured on the box (CUDA's
                                  # bandwidthTest, pageable unless the engine runs --no-mmap)

RAM peak = transfers per second x 8 bytes per channel x channels (a DDR5 DIMM's two 32-bit sub-channels make one
64-bit channel here, as the makers count "dual channel"). A peak is what the bus could carry; what the engines
reach is a share of it (the performance model's prior efficiencies).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.config_lines import validated_yaml
from harness.errors import UserError
from harness.hardware.gpus import GpuSpec, gpu_named

_RAM = re.compile(r"^(?P<type>ddr[345]|lpddr[45]x?)-(?P<mts>\d{3,5})(?:x(?P<channels>\d{1,2}))?$", re.IGNORECASE)


@dataclass(frozen=True)
class RamSpec:
    description: str               # `ddr5-4800x2`, or `70 GB/s` when given as a bandwidth
    peak_gb_s: float

    @property
    def peak_bytes_s(self) -> float:
        return self.peak_gb_s * 1e9


def parse_ram(text: str) -> RamSpec:
    """`ddr5-4800x2` (type-MT/s x channels; channels default 2), or a bandwidth `70GB/s`."""
    text = text.strip()
    bandwidth = re.fullmatch(r"(\d+(?:\.\d+)?)\s*gb/?s", text, re.IGNORECASE)
    if bandwidth:
        return RamSpec(f"{float(bandwidth.group(1)):g} GB/s", float(bandwidth.group(1)))
    match = _RAM.match(text)
    if not match:
        raise UserError(f"RAM {text!r}: expected TYPE-MTS[xCHANNELS] (ddr4-3200x2, ddr5-6000x2, ddr5-4800x8) "
                        "or a read bandwidth (70GB/s)")
    channels = int(match["channels"] or 2)
    mts = int(match["mts"])
    return RamSpec(f"{match['type'].lower()}-{mts}x{channels}", mts * 1e6 * 8 * channels / 1e9)


@dataclass(frozen=True)
class HardwareProfile:
    gpu: GpuSpec
    ram: RamSpec
    cores: int
    source: str = "command line"          # where the description came from
    upload_gb_s: float | None = None      # the measured host-to-GPU copy rate, where known (else PCIe x a share)

    def describe(self) -> str:
        upload = f", uploads {self.upload_gb_s:g} GB/s measured" if self.upload_gb_s else ""
        return (f"{self.gpu.name} ({self.gpu.vram_gib:g} GiB, {self.gpu.memory_gb_s:g} GB/s, PCIe "
                f"{self.gpu.pcie_gen}.0 x{self.gpu.pcie_lanes}{upload}), RAM {self.ram.description} "
                f"({self.ram.peak_gb_s:.1f} GB/s peak), {self.cores} cores")

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": asdict(self.gpu), "ram": asdict(self.ram), "cores": self.cores, "source": self.source,
                "upload_gb_s": self.upload_gb_s}


def profile_from_args(gpu: str, ram: str, cores: int) -> HardwareProfile:
    if cores < 1:
        raise UserError(f"--cores {cores}: expected a positive number of CPU cores")
    return HardwareProfile(gpu_named(gpu), parse_ram(ram), cores)


class _GpuFigures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    vram_gib: float = Field(gt=0)
    memory_gb_s: float = Field(gt=0)
    pcie_gen: int = Field(ge=1, le=6)
    pcie_lanes: int = Field(ge=1, le=16)
    fp16_tflops: float | None = Field(default=None, gt=0)


class _RamFigures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gb_s: float = Field(gt=0)


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gpu: str | _GpuFigures
    ram: str | _RamFigures
    cores: int = Field(ge=1)
    upload_gb_s: float | None = Field(default=None, gt=0)


def load_profile(path: Path) -> HardwareProfile:
    """A profile file; a mistake names the file, line and key."""
    path = Path(path)
    spec, _ = validated_yaml(path, _ProfileFile, "a hardware profile in YAML", "gpu, ram and cores")
    gpu = (gpu_named(spec.gpu) if isinstance(spec.gpu, str)
           else GpuSpec(spec.gpu.name, spec.gpu.vram_gib, spec.gpu.memory_gb_s, spec.gpu.pcie_gen,
                        spec.gpu.pcie_lanes, spec.gpu.fp16_tflops, f"profile file {path}"))
    ram = parse_ram(spec.ram) if isinstance(spec.ram, str) else RamSpec(f"{spec.ram.gb_s:g} GB/s", spec.ram.gb_s)
    return HardwareProfile(gpu, ram, spec.cores, str(path), spec.upload_gb_s)
