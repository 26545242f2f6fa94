"""A fingerprint of the machine a result was measured on: CPU, RAM, OS and, where NVML answers, the GPUs."""

from __future__ import annotations

import platform
from functools import lru_cache

import psutil


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
    """Name, memory and driver of each NVIDIA GPU; empty without a driver (this is not an error)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver, no GPU: the host simply has no NVIDIA GPU to report
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append({
                "name": name.decode() if isinstance(name, bytes) else name,
                "vram_total_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1 << 20),
                "driver": driver.decode() if isinstance(driver, bytes) else driver,
                **_pcie(pynvml, handle),
            })
        return gpus
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _pcie(pynvml, handle) -> dict:
    """PCIe link generation and width, current and max; a value the GPU does not report stays None."""
    out = {}
    for key, fn in (("pcie_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration"),
                    ("pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration"),
                    ("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth"),
                    ("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth")):
        try:
            out[key] = int(getattr(pynvml, fn)(handle))
        except Exception:  # NotSupported on this GPU (or vGPU): leave it empty
            out[key] = None
    return out


@lru_cache(maxsize=1)
def host_fingerprint() -> dict:
    gpus = _gpus()
    return {
        "host_name": platform.node(),
        "host_cpu": _cpu_model(),
        "host_cpu_cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "host_cpu_threads": psutil.cpu_count(),
        "host_ram_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "host_os": f"{platform.system()} {platform.release()}",
        "gpu_name": "; ".join(g["name"] for g in gpus),
        "gpu_vram_total_mib": sum(g["vram_total_mib"] for g in gpus) if gpus else None,
        "gpu_driver": gpus[0]["driver"] if gpus else "",
        "gpu_pcie": "; ".join(f"gen{g['pcie_gen_current']}/{g['pcie_gen_max']} x{g['pcie_width_current']}/"
                              f"{g['pcie_width_max']}" for g in gpus),
    }
