"""Telemetry during a run: GPU (NVML), PCIe, the engine's process tree, host RAM and CPU, sampled in a
background thread and attributed to the phases (prompt processing, generation, ...) the runner marks.

- `Sampler(root_pid, hz=10.0, *, loopback=False, nvml=None)`: the sampling thread; `mark_phase`,
  `summarize`, `write_csv_gz`, `warnings`, `cpu_seconds`.
- `summarize_phase(samples, windows, tokens)` and `TELEMETRY_COLUMNS`: one results row's figures for a phase
  (and under `per_gpu` each GPU's own: devices.csv).
- `open_nvml()` -> `NvmlSource | None`: an NVML session; `shared_nvml()`: this process's one session (the host
  fingerprint, the planner's VRAM budget and the sweep's samplers share it).
- `ProcessTreeSource`: the process tree (and the host) on its own; `HostSource`: the host alone.
"""

from harness.telemetry.attribution import TELEMETRY_COLUMNS, summarize_phase
from harness.telemetry.host import HostSource
from harness.telemetry.nvml import NvmlSource, open_nvml, shared_nvml
from harness.telemetry.process import ProcessTreeSource
from harness.telemetry.sampler import Sampler

__all__ = ["HostSource", "NvmlSource", "ProcessTreeSource", "Sampler", "TELEMETRY_COLUMNS", "open_nvml", "shared_nvml",
           "summarize_phase"]
