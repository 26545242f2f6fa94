"""Prior constants: the performance model's constants for a box described by a hardware profile and never
measured. Each constant is a physical figure of the profile (RAM, GPU memory and PCIe peaks, the GPU's tensor
throughput, the cores) over a share of it the engines reach (`Efficiencies`), plus two fixed costs:

    tg  cpu_s_per_byte   = 1 / (cpu_read x RAM peak)          accel_s_per_byte = 1 / (gpu_read x GPU memory peak)
        kv_s_per_byte    = accel_s_per_byte / kv_read          crossing_s, detour_s: fixed seconds
    pp  cpu_s_per_flop   = 1 / (cores x cpu_gflops_per_core)   accel_s_per_flop = 1 / (gpu_flops x fp16 peak)
        pass_s, crossing_s: fixed seconds
    bus_s_per_byte = 1 / (bus x PCIe peak)

The efficiencies shipped (`PRIOR`) are a starting point, not a measurement of this project: `moebench
calibrate` on the user's own box replaces the whole calibration; `benchmarks/published.py` fits them to the
published tables in `../shared/published/` and prints how far each table's rows are from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from harness.hardware.profile import HardwareProfile
from harness.perf.calibration import Calibration, ToolCalibration
from harness.perf.model import Constants, Peaks
from harness.perf.peaks import PCIE_LANE_BYTES_S

# a GPU without a tensor figure in the table: its memory bandwidth times this many FLOP per byte (the
# ratio of the cards that have both, about 100-165 for Ampere and Ada GeForce cards)
_FLOP_PER_BYTE_WITHOUT_FIGURE = 80.0


@dataclass(frozen=True)
class Efficiencies:
    cpu_read: float = 0.55               # share of the RAM peak a generation pass reads weights at
    gpu_read: float = 0.60               # share of the GPU memory peak
    kv_read: float = 0.5                 # attention reads the cache at this share of the weights' rate
    bus: float = 0.75                    # share of the PCIe peak (pinned host buffers)
    gpu_flops: float = 0.20              # share of the dense FP16 tensor peak a prompt's matrix products reach
    cpu_gflops_per_core: float = 40.0    # a prompt's quantized matrix products on one CPU core, GFLOP/s
    crossing_s: float = 40e-6            # one device crossing: a synchronization and a small copy
    detour_s: float = 0.0                # the extra cost of leaving the GPU mid-layer, beyond two crossings
    pass_s: float = 2e-3                 # fixed cost of a prompt micro-batch pass (launches, scheduling)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_values(self, **values: float) -> "Efficiencies":
        return replace(self, **values)


PRIOR = Efficiencies()


def profile_peaks(profile: HardwareProfile) -> Peaks:
    gpu = profile.gpu
    return Peaks(profile.ram.peak_bytes_s, gpu.memory_bytes_s,
                 PCIE_LANE_BYTES_S.get(gpu.pcie_gen, 0.0) * gpu.pcie_lanes,
                 {"cpu": f"RAM {profile.ram.description}", "accel": f"{gpu.name}: {gpu.source}",
                  "bus": f"PCIe {gpu.pcie_gen}.0 x{gpu.pcie_lanes}"})


def gpu_flops_s(profile: HardwareProfile) -> float:
    gpu = profile.gpu
    return gpu.fp16_tflops * 1e12 if gpu.fp16_tflops else gpu.memory_bytes_s * _FLOP_PER_BYTE_WITHOUT_FIGURE


def prior_constants(profile: HardwareProfile, eff: Efficiencies = PRIOR) -> Constants:
    peaks = profile_peaks(profile)
    accel_s_per_byte = 1.0 / (eff.gpu_read * peaks.accel_bytes_s)
    tg = {"crossing_s": eff.crossing_s, "detour_s": eff.detour_s,
          "cpu_s_per_byte": 1.0 / (eff.cpu_read * peaks.cpu_bytes_s), "accel_s_per_byte": accel_s_per_byte,
          "kv_s_per_byte": accel_s_per_byte / eff.kv_read}
    pp = {"pass_s": eff.pass_s, "crossing_s": eff.crossing_s,
          "cpu_s_per_flop": 1.0 / (profile.cores * eff.cpu_gflops_per_core * 1e9),
          "accel_s_per_flop": 1.0 / (eff.gpu_flops * gpu_flops_s(profile))}
    return Constants(tg, pp, 1.0 / (eff.bus * peaks.bus_bytes_s))


def prior_calibration(profile: HardwareProfile, *, engine: str, device: str, tools: dict[str, int],
                      eff: Efficiencies = PRIOR) -> Calibration:
    """A calibration made of priors for `engine` on `device`, one entry per tool with the thread count its
    configurations run with (the model keys the CPU terms on it)."""
    constants = prior_constants(profile, eff)
    return Calibration(engine, device, profile_peaks(profile),
                       {tool: ToolCalibration(threads, constants, [], {}) for tool, threads in tools.items()},
                       host={"profile": profile.describe()}, created_at="prior", results="")
