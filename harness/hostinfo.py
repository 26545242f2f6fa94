"""A fingerprint of the machine a result was measured on: CPU, RAM, OS and, where NVML answers, the GPUs."""

from __future__ import annotations

import platform
from functools import lru_cache

import psutil

from harness.telemetry.nvml import shared_nvml
from harness.units import GIB


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[dict]:
    """Name, memory, driver and PCIe link of each NVIDIA GPU (through the process's one NVML session,
    `harness.telemetry.nvml.shared_nvml`); empty without a driver (this is not an error)."""

    nvml = shared_nvml()
    return nvml.describe_gpus() if nvml is not None else []


@lru_cache(maxsize=1)
def host_fingerprint() -> dict:
    gpus = _gpus()
    return {
        "host_name": platform.node(),
        "host_cpu": _cpu_model(),
        "host_cpu_cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "host_cpu_threads": psutil.cpu_count(),
        "host_ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "host_os": f"{platform.system()} {platform.release()}",
        "gpu_name": "; ".join(g["name"] for g in gpus),
        "gpu_vram_total_mib": sum(g["vram_total_mib"] for g in gpus) if gpus else None,
        "gpu_driver": gpus[0]["driver"] if gpus else "",
        "gpu_pcie": "; ".join(f"gen{g['pcie_gen_current']}/{g['pcie_gen_max']} x{g['pcie_width_current']}/"
                              f"{g['pcie_width_max']}" for g in gpus),
    }
