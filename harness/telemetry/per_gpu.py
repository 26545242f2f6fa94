"""Per-GPU figures of a phase: each GPU's VRAM peak, PCIe traffic and utilization, beside the aggregate columns
(`vram_peak_mib` is the fullest GPU of each sample, PCIe summed, utilization averaged: see
`harness.telemetry.attribution`). With a placement over several GPUs these say which card filled up, which bus
carried the traffic, which card waited.

Keyed by NVML's GPU index (NVML's order; CUDA's is the same with `CUDA_DEVICE_ORDER=PCI_BUS_ID`), every GPU the
samples have, however many. The results store writes them to devices.csv, one row per run and GPU (device
`gpu<i>`, `harness.results.record.DeviceFigures`); up to schema 2 they were the runs.csv columns
`<metric>_gpu0` ... `<metric>_gpu7`.
"""

from __future__ import annotations

import statistics
from typing import Callable, Iterable

PER_GPU_METRICS = (  # figure name (a devices.csv column), sample key, reduction over the phase's samples
    ("vram_peak_mib", "vram_used_mib", max),
    ("gpu_util_pct_mean", "gpu_util_pct", statistics.fmean),
    ("pcie_rx_mib_s_mean", "pcie_rx_mib_s", statistics.fmean),
    ("pcie_tx_mib_s_mean", "pcie_tx_mib_s", statistics.fmean),
)
PER_GPU_FIGURES: tuple[str, ...] = tuple(name for name, _, _ in PER_GPU_METRICS)


def per_gpu_figures(pick: Callable[[Callable[[dict], float | None]], list[float]], gpus: Iterable[int]
                    ) -> dict[int, dict[str, float | None]]:
    """GPU index -> its PER_GPU_FIGURES for the GPUs `gpus` (those the samples name); `pick(value)` returns the
    phase's values of `value(sample)` (the attribution's window rule). A metric without samples is None."""
    out: dict[int, dict[str, float | None]] = {}
    for i in sorted(gpus):
        figures = {}
        for name, key, reduce in PER_GPU_METRICS:
            values = pick(lambda s, k=f"gpu{i}_{key}": s.get(k))
            figures[name] = reduce(values) if values else None
        out[i] = figures
    return out
