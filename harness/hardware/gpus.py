"""The GPUs people put MoE offload on, as their makers specify them: memory, memory bandwidth, the PCIe link the
card has, and (where the maker's whitepaper gives it) the dense FP16 tensor throughput with FP32 accumulate.

Each figure is the maker's specification, not a measurement; `source` says which document. A card is found by
its name in any spelling (`RTX 4090`, `rtx4090`, `NVIDIA GeForce RTX 4090`: NVML's name), ignoring case, spaces,
dashes and the `NVIDIA` / `GeForce` / `AMD` / `Radeon` words.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from harness.errors import UserError


@dataclass(frozen=True)
class GpuSpec:
    name: str
    vram_gib: float
    memory_gb_s: float              # 10^9 bytes per second, the maker's figure
    pcie_gen: int
    pcie_lanes: int
    fp16_tflops: float | None       # dense tensor FP16 with FP32 accumulate; None where not given
    source: str

    @property
    def memory_bytes_s(self) -> float:
        return self.memory_gb_s * 1e9


_AMPERE = "NVIDIA Ampere GA102 GPU architecture whitepaper (v2.1), appendix A"
_ADA = "NVIDIA Ada GPU architecture whitepaper (v2.1), appendix A"
_BLACKWELL = "NVIDIA RTX Blackwell GPU architecture whitepaper (v1.0), appendix A"
_SPEC = "the maker's product specification page"

GPUS: tuple[GpuSpec, ...] = (
    GpuSpec("RTX 3060", 12, 360, 4, 16, None, _SPEC),
    GpuSpec("RTX 3080", 10, 760, 4, 16, 59.5, _AMPERE),
    GpuSpec("RTX 3090", 24, 936, 4, 16, 71.0, _AMPERE),
    GpuSpec("RTX 3090 Ti", 24, 1008, 4, 16, None, _SPEC),
    GpuSpec("RTX 4060 Ti 16GB", 16, 288, 4, 8, None, _SPEC),
    GpuSpec("RTX 4070 Ti Super", 16, 672, 4, 16, None, _SPEC),
    GpuSpec("RTX 4080", 16, 716.8, 4, 16, 97.5, _ADA),
    GpuSpec("RTX 4090", 24, 1008, 4, 16, 165.2, _ADA),
    GpuSpec("RTX 5060 Ti 16GB", 16, 448, 5, 8, None, _SPEC),
    GpuSpec("RTX 5080", 16, 960, 5, 16, 112.6, _BLACKWELL),
    GpuSpec("RTX 5090", 32, 1792, 5, 16, 209.5, _BLACKWELL),
    GpuSpec("Tesla P40", 24, 347, 3, 16, None, _SPEC),
    GpuSpec("A100 80GB PCIe", 80, 1935, 4, 16, 312.0, _SPEC),
    GpuSpec("H100 PCIe", 80, 2000, 5, 16, 756.0, _SPEC),
    GpuSpec("H100 SXM", 80, 3350, 5, 16, 989.0, _SPEC),
    GpuSpec("H200", 141, 4800, 5, 16, 989.0, _SPEC),
    GpuSpec("RX 7900 XTX", 24, 960, 4, 16, None, _SPEC),
)

_NOISE = re.compile(r"\b(nvidia|geforce|amd|radeon)\b", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _NOISE.sub("", name).lower())


_BY_KEY = {_key(g.name): g for g in GPUS}
# NVML's names for the cards whose table name carries a memory size or form factor
_ALIASES = {"rtx4060ti": "rtx4060ti16gb", "rtx5060ti": "rtx5060ti16gb", "a10080gbpcie": "a10080gbpcie",
            "h100pcie80gb": "h100pcie", "h10080gbhbm3": "h100sxm", "h100": "h100sxm", "h200nvl": "h200"}


def gpu_named(name: str) -> GpuSpec:
    """The card of that name; an unknown one is a UserError with the closest known names and the list."""
    key = _key(name)
    found = _BY_KEY.get(_ALIASES.get(key, key))
    if found is None:
        names = [g.name for g in GPUS]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown GPU {name!r}{hint}; known: {', '.join(names)}; or describe it in a profile "
                        "file (vram_gib, memory_gb_s, pcie_gen, pcie_lanes)")
    return found
