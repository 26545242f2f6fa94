"""Prior constants: the performance model's constants for a box described by a hardware profile and never
measured. Each constant is a physical figure of the profile (RAM, GPU memory and PCIe peaks, the GPU's tensor
throughput, the cores) over a share of it the engines reach (`Efficiencies`), plus two fixed costs:

    tg  cpu_s_per_byte   = 1 / (cpu_read x RAM peak)          accel_s_per_byte = 1 / (gpu_read x GPU memory peak)
        kv_s_per_byte    = accel_s_per_byte / kv_read          crossing_s, detour_s: fixed seconds
    pp  cpu_s_per_flop   = 1 / (cores x cpu_gflops_per_core)   accel_s_per_flop = 1 / (gpu_flops x fp16 peak)
        pass_s, crossing_s: fixed seconds
    bus_s_per_byte = 1 / (bus x PCIe peak), or 1 / the profile's measured upload rate (`upload_gb_s`)

and, for a prompt on a GPU box (`harness.perf.described`), the terms of op offload's uploads:

    upload_s             a fixed cost per layer whose RAM-held experts a micro-batch uploads (the router ids
                         read back and waited for before the copy: docs/ENGINE_FLAGS.md section 9)
    routing_draws        the expert uploads' share of a micro-batch: both engines copy only the experts the
                         micro-batch uses; a prompt's tokens route alike, so a micro-batch of T tokens touches
                         the experts T x routing_draws independent tokens would (1 = uniform routing)
    routing_focus        routing concentrates in the later layers, so a micro-batch touches fewer of their
                         experts: the draws at the last layer are routing_focus x those at the first, geometric
                         between (ik's maintainer, ik_llama.cpp PR #2262: last-N uploads fewer experts than
                         first-N; with -no-ooae, whole tensors copied, the two tie). Guess 0.5: the direction is
                         the source's, the size a guess, left to the fit
    routing_skew         the experts' popularity within a layer falls as rank^-skew (a few hot experts, a cold tail
                         a micro-batch rarely reaches), so the share touched grows slowly with the micro-batch (0:
                         uniform); guess 0.5, fitted: it is what lets first-N gain from only-active-experts at
                         2048 tokens (ik PR #2262's -no-ooae row), which uniform draws cannot
    pageable             an upload from pageable host memory (mainline's file mapping under mmap) over one from
                         a pinned buffer: 0.55, llama.cpp PR #20978 (gpt-oss-20b, tensor overrides, llama-bench
                         pp2048, mmap 1 against mmap 0: 0.55 at ubatch 128 where the uploads are most of the
                         time, 0.67 at 2048 where they are less)
    launch_s             generation without CUDA graphs, per GPU segment of a pass: llama.cpp PR #18934 (graphs
                         per split with --n-cpu-moe, tg128 before/after, "2x4090 and 1x 5090"): gpt-oss-120b
                         n-cpu-moe 8 saved 0.51 ms per token (64 us per RAM-held layer, one GPU segment each),
                         glm4moe 106B 8 -> 64 layers 2.9 ms more (76 us per layer); not fitted (one table has
                         no graphs, where it trades with the RAM share)
    gpu_flops_by_type    the prompt's arithmetic share per type of the routed experts (mmq kernels differ by
                         type and run on the int8 tensor cores, so a share of the FP16 peak may exceed 1)

`GUESS` is the stated guess; `PRIOR` is what `benchmarks/published.py --write` fitted on the published tables
(`prior_fit.json` beside this module: the tables, the date, the residuals), `GUESS` when that file is absent.
`moebench calibrate` on the user's own box replaces the whole calibration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

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
    upload_s: float = 50e-6              # one layer's experts uploaded for a micro-batch: ids read back, wait
    routing_draws: float = 1.0           # independent routing draws per prompt token (1: uniform routing)
    routing_focus: float = 0.5           # the draws at the last layer over those at the first (1: alike)
    routing_skew: float = 0.5            # expert popularity falls as rank^-skew (0: uniform)
    pageable: float = 0.55               # a pageable host buffer's upload rate over a pinned one's
    launch_s: float = 65e-6              # a generation pass's GPU segment launched kernel by kernel (no graphs)
    gpu_flops_by_type: dict[str, float] = field(default_factory=dict)   # routed experts' type -> gpu_flops

    def to_dict(self) -> dict:
        return asdict(self)

    def with_values(self, **values) -> "Efficiencies":
        return replace(self, **values)

    def gpu_flops_for(self, expert_type: str | None) -> float:
        return self.gpu_flops_by_type.get(expert_type or "", self.gpu_flops)


GUESS = Efficiencies()
FIT_FILE = Path(__file__).with_name("prior_fit.json")


def load_fit(path: Path = FIT_FILE) -> tuple[Efficiencies, dict]:
    """The efficiencies `benchmarks/published.py --write` stored, and the fit's record (tables, date,
    residuals); `GUESS` and an empty record where there is no file."""
    if not path.is_file():
        return GUESS, {}
    data = json.loads(path.read_text())
    known = set(GUESS.to_dict())
    return GUESS.with_values(**{k: v for k, v in data["efficiencies"].items() if k in known}), data


PRIOR, PRIOR_FIT = load_fit()


def profile_peaks(profile: HardwareProfile) -> Peaks:
    gpu = profile.gpu
    return Peaks(profile.ram.peak_bytes_s, gpu.memory_bytes_s,
                 PCIE_LANE_BYTES_S.get(gpu.pcie_gen, 0.0) * gpu.pcie_lanes,
                 {"cpu": f"RAM {profile.ram.description}", "accel": f"{gpu.name}: {gpu.source}",
                  "bus": f"PCIe {gpu.pcie_gen}.0 x{gpu.pcie_lanes}"})


def gpu_flops_s(profile: HardwareProfile) -> float:
    gpu = profile.gpu
    return gpu.fp16_tflops * 1e12 if gpu.fp16_tflops else gpu.memory_bytes_s * _FLOP_PER_BYTE_WITHOUT_FIGURE


def prior_constants(profile: HardwareProfile, eff: Efficiencies = PRIOR, expert_type: str | None = None
                    ) -> Constants:
    peaks = profile_peaks(profile)
    accel_s_per_byte = 1.0 / (eff.gpu_read * peaks.accel_bytes_s)
    tg = {"crossing_s": eff.crossing_s, "detour_s": eff.detour_s,
          "cpu_s_per_byte": 1.0 / (eff.cpu_read * peaks.cpu_bytes_s), "accel_s_per_byte": accel_s_per_byte,
          "kv_s_per_byte": accel_s_per_byte / eff.kv_read}
    pp = {"pass_s": eff.pass_s, "crossing_s": eff.crossing_s,
          "cpu_s_per_flop": 1.0 / (profile.cores * eff.cpu_gflops_per_core * 1e9),
          "accel_s_per_flop": 1.0 / (eff.gpu_flops_for(expert_type) * gpu_flops_s(profile))}
    upload_bytes_s = profile.upload_gb_s * 1e9 if profile.upload_gb_s else eff.bus * peaks.bus_bytes_s
    return Constants(tg, pp, 1.0 / upload_bytes_s)


def prior_calibration(profile: HardwareProfile, *, engine: str, device: str, tools: dict[str, int],
                      eff: Efficiencies = PRIOR) -> Calibration:
    """A calibration made of priors for `engine` on `device`, one entry per tool with the thread count its
    configurations run with (the model keys the CPU terms on it)."""
    constants = prior_constants(profile, eff)
    return Calibration(engine, device, profile_peaks(profile),
                       {tool: ToolCalibration(threads, constants, [], {}) for tool, threads in tools.items()},
                       host={"profile": profile.describe()}, created_at="prior")
