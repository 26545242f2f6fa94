"""Per-GPU figures of a phase: each GPU's VRAM peak, PCIe traffic and utilization, beside the aggregate columns
(`vram_peak_mib` is the fullest GPU of each sample, PCIe summed, utilization averaged: see
`harness.telemetry.attribution`). With a placement over several GPUs these say which card filled up, which bus
carried the traffic, which card waited.

Columns `<metric>_gpu<i>` for NVML's GPUs 0..MAX_GPUS-1 (NVML's index order; CUDA's is the same with
`CUDA_DEVICE_ORDER=PCI_BUS_ID`); a GPU beyond them is in the time series and the aggregates only.
"""

from __future__ import annotations

import statistics
from typing import Callable

MAX_GPUS = 8
_METRICS = (  # column prefix, sample key, reduction over the phase's samples
    ("vram_peak_mib", "vram_used_mib", max),
    ("gpu_util_pct_mean", "gpu_util_pct", statistics.fmean),
    ("pcie_rx_mib_s_mean", "pcie_rx_mib_s", statistics.fmean),
    ("pcie_tx_mib_s_mean", "pcie_tx_mib_s", statistics.fmean),
)
PER_GPU_COLUMNS: list[str] = [f"{column}_gpu{i}" for i in range(MAX_GPUS) for column, _, _ in _METRICS]


def per_gpu_figures(pick: Callable[[Callable[[dict], float | None]], list[float]]) -> dict[str, float | None]:
    """The PER_GPU_COLUMNS; `pick(value)` returns the phase's values of `value(sample)` (the attribution's
    window rule). A GPU or metric without samples is None."""
    out: dict[str, float | None] = {}
    for i in range(MAX_GPUS):
        for column, key, reduce in _METRICS:
            values = pick(lambda s, k=f"gpu{i}_{key}": s.get(k))
            out[f"{column}_gpu{i}"] = reduce(values) if values else None
    return out
