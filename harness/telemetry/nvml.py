"""NVIDIA GPUs through NVML (the official `nvidia-ml-py`, imported as `pynvml`).

Per GPU i, a sample has these keys (prefix `gpu{i}_`):

| key | NVML call | unit |
|---|---|---|
| `vram_used_mib`, `vram_total_mib` | nvmlDeviceGetMemoryInfo (bytes) | MiB |
| `gpu_util_pct`, `mem_util_pct` | nvmlDeviceGetUtilizationRates (see below) | % |
| `pcie_tx_mib_s`, `pcie_rx_mib_s` | nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_TX/RX_BYTES) | MiB/s |
| `pcie_gen`, `pcie_width`, `pcie_gen_max`, `pcie_width_max` | nvmlDeviceGetCurr/MaxPcieLinkGeneration/Width | gen, lanes |
| `power_w` | nvmlDeviceGetPowerUsage (mW) | W |
| `energy_j` | nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded; Volta and newer) | J |
| `sm_clock_mhz`, `mem_clock_mhz` | nvmlDeviceGetClockInfo(NVML_CLOCK_SM / NVML_CLOCK_MEM) | MHz |
| `temp_c` | nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU) | °C |
| `clock_event_reasons` | nvmlDeviceGetCurrentClocksEventReasons (older pynvml: ...ClocksThrottleReasons) | bitmask |

Utilization: the share of the driver's last sample period (1/6 s to 1 s, by product) in which a kernel ran
(`gpu_util_pct`) or device memory was read or written (`mem_util_pct`): busy time, not how busy.

PCIe throughput: the driver reports KB/s *measured over a 20 ms window* at the time of the call (NVML's
documentation: "querying a byte counter over a 20ms interval"; it does not define KB, taken here as 1024
bytes, so MiB/s = KB/s / 1024), and the call itself waits for that window (about 20 ms for TX plus 20 ms for RX per GPU). It is a spot
measurement, not an average since the previous sample: at 10 Hz it sees 20 % of the time (TX and RX windows
are consecutive, not simultaneous), so means over many samples are fair estimates, single values are noisy.
TX is from the GPU to the host, RX from the host to the GPU (NVML's view: the GPU transmits or receives).
`pcie_gen` and `pcie_width` are the *current* link: an idle GPU trains its link down to save power, so read
them during load. The max values are read once when the source opens.

Clock event reasons: why the clocks are below their maximum right now, NVML's bitmask as an int (0x4 software
power cap, 0x40 hardware thermal slowdown, ...; the names are in `harness.telemetry.attribution`, which turns
them into `gpu_throttle_reasons`). NVML renamed the call from "throttle" to "clocks event" reasons (same bits);
the new name is used where pynvml has it. A pynvml with neither switches the metric off like an unsupported one.

Power: on Ampere (except GA100) and newer, nvmlDeviceGetPowerUsage is an average over the last second, so
energy from the total-energy counter is preferred where the GPU has one.

Failures never leave this module. No library, no driver or no GPU: `open_nvml` returns None (the source is
absent; logged at debug level). A metric whose call raises (NVMLError_NotSupported or any other error) is
switched off for that GPU with one warning and stays empty. A GPU that raises NVMLError_GpuIsLost, or whose
every call fails in one sample, is switched off as a whole with one warning. Warnings go to the `warn`
callback of `sample` (the sampler keeps them for the results row) and to `logging`.
"""

from __future__ import annotations

import atexit
import logging
from functools import lru_cache
from types import ModuleType
from typing import Any, Callable

from harness.units import MIB

log = logging.getLogger(__name__)

KIB_PER_MIB = 1024  # NVML's PCIe throughput is in KB/s, KB taken as 1024 bytes

Warn = Callable[[str], None]


def _metrics(nv: ModuleType) -> dict[str, Callable[[Any], dict[str, float]]]:
    """Per-metric readers: name -> function(handle) -> {key: value}. One reader = one on/off switch."""
    def memory(h):
        info = nv.nvmlDeviceGetMemoryInfo(h)
        return {"vram_used_mib": info.used / MIB, "vram_total_mib": info.total / MIB}

    def utilization(h):
        rates = nv.nvmlDeviceGetUtilizationRates(h)
        return {"gpu_util_pct": float(rates.gpu), "mem_util_pct": float(rates.memory)}

    def pcie_tx(h):
        return {"pcie_tx_mib_s": nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) / KIB_PER_MIB}

    def pcie_rx(h):
        return {"pcie_rx_mib_s": nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) / KIB_PER_MIB}

    def pcie_link(h):
        return {"pcie_gen": float(nv.nvmlDeviceGetCurrPcieLinkGeneration(h)),
                "pcie_width": float(nv.nvmlDeviceGetCurrPcieLinkWidth(h))}

    def power(h):
        return {"power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0}

    def energy(h):
        return {"energy_j": nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0}

    def clocks(h):
        return {"sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                "mem_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))}

    def temperature(h):
        return {"temp_c": float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))}

    reasons_call = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                    or getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None))

    def clock_events(h):
        if reasons_call is None:
            raise AttributeError("pynvml has neither nvmlDeviceGetCurrentClocksEventReasons nor "
                                 "nvmlDeviceGetCurrentClocksThrottleReasons")
        return {"clock_event_reasons": int(reasons_call(h))}

    return {"memory": memory, "utilization": utilization, "pcie_tx": pcie_tx, "pcie_rx": pcie_rx,
            "pcie_link": pcie_link, "power": power, "energy": energy, "clocks": clocks, "temperature": temperature,
            "clock_events": clock_events}


def _link_max(nv: ModuleType, handle: Any) -> dict[str, float]:
    out = {}
    for key, fn in (("pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration"),
                    ("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth")):
        try:
            out[key] = float(getattr(nv, fn)(handle))
        except Exception:  # noqa: BLE001 - a missing max is just a missing column
            pass
    return out


class _Gpu:
    def __init__(self, index: int, handle: Any, static: dict[str, float], metrics: list[str]):
        self.index = index
        self.handle = handle
        self.static = static
        self.enabled = list(metrics)
        self.lost = False
        self.prefix = f"gpu{index}_"


class NvmlSource:
    """An initialised NVML with at least one GPU. Thread-safe enough for one sampler at a time; several
    samplers may share it one after the other (a metric switched off stays off, and is warned about once)."""

    def __init__(self, nv: ModuleType, gpus: list[_Gpu]):
        self._nv = nv
        self._gpus = gpus
        self._readers = _metrics(nv)
        self._closed = False

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def sample(self, warn: Warn | None = None) -> dict[str, float]:
        """One sample of every GPU still working; never raises."""
        warn = warn or (lambda msg: None)
        row: dict[str, float] = {}
        if self._closed:
            return row
        for gpu in self._gpus:
            if not gpu.lost:
                try:
                    row.update(self._sample_gpu(gpu, warn))
                except Exception as exc:  # noqa: BLE001 - sampling never raises
                    self._lose(gpu, warn, f"unexpected error {exc!r}")
        return row

    def _sample_gpu(self, gpu: _Gpu, warn: Warn) -> dict[str, float]:
        values: dict[str, float] = {}
        failed: dict[str, BaseException] = {}
        lost_type = getattr(self._nv, "NVMLError_GpuIsLost", None)
        for name in gpu.enabled:
            try:
                values.update(self._readers[name](gpu.handle))
            except Exception as exc:  # noqa: BLE001 - NVMLError or anything else alike
                if lost_type is not None and isinstance(exc, lost_type):
                    self._lose(gpu, warn, "GPU is lost")
                    return {}
                failed[name] = exc
        if failed and not values and len(gpu.enabled) > 1:
            # every call failed: the GPU is gone (or the driver is), not one metric
            self._lose(gpu, warn, f"every NVML call failed ({next(iter(failed.values()))!r})")
            return {}
        for name, exc in failed.items():
            gpu.enabled.remove(name)
            _warn(warn, f"NVML: GPU {gpu.index}: {name} switched off ({_describe(exc)}); its columns stay empty")
        if not values:
            return {}
        return {gpu.prefix + key: value for key, value in {**values, **gpu.static}.items()}

    def _lose(self, gpu: _Gpu, warn: Warn, why: str) -> None:
        gpu.lost = True
        _warn(warn, f"NVML: GPU {gpu.index} dropped from telemetry: {why}; its columns stay empty from here on")

    def free_bytes(self, index: int = 0) -> int | None:
        """Free memory of GPU `index` now (the planner's VRAM budget), None when NVML cannot say."""
        gpu = next((g for g in self._gpus if g.index == index), None)
        try:
            return int(self._nv.nvmlDeviceGetMemoryInfo(gpu.handle).free) if gpu else None
        except Exception:  # noqa: BLE001 - no budget rather than no plan
            return None

    def describe_gpus(self) -> list[dict]:
        """Name, memory, driver and PCIe link (current and max) of each GPU: the host fingerprint's part."""
        try:
            driver = self._nv.nvmlSystemGetDriverVersion()
        except Exception:  # noqa: BLE001
            driver = ""
        out = []
        for gpu in self._gpus:
            try:
                name = self._nv.nvmlDeviceGetName(gpu.handle)
                total = int(self._nv.nvmlDeviceGetMemoryInfo(gpu.handle).total)
            except Exception:  # noqa: BLE001 - a GPU that cannot say what it is is left out
                continue
            link = {}
            for key, fn in (("pcie_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration"),
                            ("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth")):
                try:
                    link[key] = int(getattr(self._nv, fn)(gpu.handle))
                except Exception:  # noqa: BLE001 - NotSupported (vGPU): left empty
                    link[key] = None
            maxima = {k: int(v) for k, v in gpu.static.items()}
            out.append({"name": name.decode() if isinstance(name, bytes) else name, "vram_total_mib": total // MIB,
                        "driver": driver.decode() if isinstance(driver, bytes) else driver, **link,
                        "pcie_gen_max": maxima.get("pcie_gen_max"), "pcie_width_max": maxima.get("pcie_width_max")})
        return out

    def memory_bus(self, index: int = 0) -> tuple[float, int] | None:
        """(max memory clock in MHz, memory bus width in bits) of a GPU: its memory bandwidth peak is
        clock x width x 2 (double data rate) / 8 bytes per second. None where NVML does not say."""
        try:
            handle = self._gpus[index].handle
            return (float(self._nv.nvmlDeviceGetMaxClockInfo(handle, self._nv.NVML_CLOCK_MEM)),
                    int(self._nv.nvmlDeviceGetMemoryBusWidth(handle)))
        except Exception:  # noqa: BLE001 - no such GPU, or NotSupported
            return None

    def close(self) -> None:
        """Shut NVML down (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def open_nvml(module: ModuleType | None = None, warn: Warn | None = None) -> NvmlSource | None:
    """Initialise NVML and enumerate the GPUs; None when there is no library, no driver or no GPU.

    `module`: the pynvml module to use (tests inject a fake); default: `import pynvml`.
    `warn`: receives warnings about GPUs that cannot be opened (the others are still used).
    """
    if module is None:
        try:
            import pynvml as module  # type: ignore[no-redef]
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            log.debug("NVML telemetry off: pynvml does not import (%s)", exc)
            return None
    nv = module
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        log.debug("NVML telemetry off: nvmlInit failed (%s)", _describe(exc))
        return None
    gpus: list[_Gpu] = []
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001
        log.debug("NVML telemetry off: nvmlDeviceGetCount failed (%s)", _describe(exc))
        count = 0
    metric_names = list(_metrics(nv))
    for index in range(count):
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:  # noqa: BLE001 - e.g. a GPU without permission, or lost at start
            _warn(warn, f"NVML: GPU {index} cannot be opened ({_describe(exc)}); it is left out of telemetry")
            continue
        gpus.append(_Gpu(index, handle, _link_max(nv, handle), metric_names))
    if not gpus:
        log.debug("NVML telemetry off: no GPU")
        try:
            nv.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return None
    return NvmlSource(nv, gpus)


@lru_cache(maxsize=1)
def shared_nvml() -> NvmlSource | None:
    """This process's one NVML session, for the host fingerprint, the planner's VRAM budget and the sweep's
    samplers: opened on first use (nvmlInit can take seconds on a GPU without persistence mode), closed at
    exit. None without a library, a driver or a GPU."""
    source = open_nvml()
    if source is not None:
        atexit.register(source.close)
    return source


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _warn(warn: Warn | None, message: str) -> None:
    log.warning("%s", message)
    if warn is not None:
        warn(message)
