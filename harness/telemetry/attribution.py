"""Per-phase figures from a telemetry time series: the samples inside a phase's windows, reduced to the
TELEMETRY_COLUMNS of one results row.

`windows` are (start_s, end_s) pairs in the sampler's time (`t_s`); a phase may have several (one per
repetition) and its `tokens` are the total over all of them. Every figure is computed per metric from the
samples that have that metric and lie inside a window (start <= t_s <= end). A window with no such sample
(shorter than the sampling period, or a metric sampled sparsely like `uss_mib`) contributes the nearest sample
before it and the nearest after it instead (whichever exist): the best estimate there is, a little diluted by
what ran just before and after. `telemetry_samples` counts only samples inside the windows, so 0 says that
every figure came from neighbouring samples. A metric with no data at all is None, never 0.

Multi-GPU: `vram_*` is the fullest GPU of each sample (what decides whether a placement fits); PCIe and power
are summed over GPUs; utilization is averaged over GPUs. Each GPU's own VRAM peak, PCIe and utilization are
under `PER_GPU` (GPU index -> figures, `harness.telemetry.per_gpu`), not a column: the results store writes
them to devices.csv.

Energy: with a total-energy counter on every GPU that reports power, joules are the counter's increase over
each window, the counter linearly interpolated at the window's edges (when a window reaches past the first or
last sample, the counter's rate over the covered part times the window's length). Otherwise mean power times
the windows' total duration. PCIe and loopback MiB per token: mean MiB/s times the windows' total duration,
over tokens (the PCIe rates are 20 ms spot measurements, see `harness.telemetry.nvml`, so this is an estimate).
`loopback_mib_s` and `cpu_pct` cover the whole interval since the previous sample, so their means are weighted
by the part of each interval inside the windows (exact even when a busy machine spaces the samples unevenly);
only when no interval overlaps a window do they fall back to the nearest-sample rule.

Noise from outside the engine (the figures the runner's stability checks read):

- `other_cpu_pct_mean` (100 = one core): CPU used by everything but the measured tree (the engine's process
  tree and its RPC server's, the sampler's roots) while it was measured: the time-weighted mean, as for
  `cpu_pct`, of `host_cpu_busy_pct - cpu_pct` per sample, then raised to 0 if below. The difference is signed
  per sample (both are rates over the same interval with tick resolution, so a single sample's difference is
  noisy both ways); the mean over a phase then is the host's busy CPU seconds minus the tree's, over the time,
  with no bias from cutting each sample at 0. A sample without a tree (no `proc_count`: nothing to measure yet)
  counts the host's whole busy time as other; one with a tree but no `cpu_pct` (no baseline yet) is skipped.
  It includes the harness itself (the sampler thread, the runner's HTTP client), and stolen time on a VM.
- `swap_io_pages_s_peak` (pages/s): the highest `swap_io_pages_s` of the samples whose interval overlaps a
  window (a rate since the previous sample, like `cpu_pct`); the nearest-sample rule where none does.
- `gpu_throttle_reasons`: the clock event reasons (`gpu{i}_clock_event_reasons`, any GPU) active in any
  sample inside the windows (the nearest-sample rule for a window with none), as names joined by "+" in bit
  order, e.g. "sw_power_cap+hw_thermal_slowdown" (see `CLOCK_EVENT_REASONS`; an unknown bit is written like
  "0x800"). `gpu_idle` and `applications_clocks_setting` (clocks set by the user, not throttling) are left
  out; "" when nothing else was active, None when no sample has the reasons (no GPU, or NVML without them).
"""

from __future__ import annotations

import bisect
import re
import statistics
from typing import Callable, Iterable, Sequence

from harness.telemetry.per_gpu import per_gpu_figures

Window = tuple[float, float]
Sample = dict[str, float]
Points = list[tuple[float, float]]

TELEMETRY_COLUMNS: list[str] = [
    "vram_peak_mib", "vram_used_mean_mib",
    "pcie_rx_mib_s_mean", "pcie_rx_mib_s_peak", "pcie_tx_mib_s_mean", "pcie_tx_mib_s_peak", "pcie_mib_per_token",
    "gpu_util_pct_mean", "power_w_mean", "joules_per_token",
    "rss_peak_mib", "uss_peak_mib", "cpu_pct_mean", "ram_available_min_mib", "swap_used_peak_mib",
    "loopback_mib_s_mean", "loopback_mib_per_token",
    "other_cpu_pct_mean", "swap_io_pages_s_peak", "gpu_throttle_reasons",
    "telemetry_samples",
]
PER_GPU = "per_gpu"
"""The key of a phase summary that holds each GPU's own figures ({index: {figure: value}}), when there are GPUs."""

CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting", 0x200: "board_limit", 0x400: "reliability",
}
"""NVML's clock event (throttle) reason bits (nvmlClocksEventReason*, nvmlClocksThrottleReason*) by name."""

NOT_THROTTLING = 0x1 | 0x2
"""`gpu_idle` and `applications_clocks_setting`: the clocks are low because there is no work, or because
someone set them so; neither is the GPU holding itself back."""

_GPU_KEY = re.compile(r"^gpu(\d+)_(.+)$")


def summarize_phase(samples: Sequence[Sample], windows: Iterable[Window], tokens: float | None
                    ) -> dict[str, float | int | str | None]:
    """The TELEMETRY_COLUMNS for the samples inside `windows` (see the module's docstring for the rules), and
    under `PER_GPU` each GPU's own figures when the samples have GPUs."""
    windows = sorted((min(a, b), max(a, b)) for a, b in windows)
    out: dict[str, float | int | str | None] = dict.fromkeys(TELEMETRY_COLUMNS)
    if not windows:
        return out
    rows = sorted((s for s in samples if "t_s" in s), key=lambda s: s["t_s"])
    duration_s = sum(b - a for a, b in windows)
    per_token = tokens if tokens else None
    gpus = _gpu_metrics(rows)

    def pick(value: Callable[[Sample], float | None]) -> list[float]:
        return _select(_points(rows, value), windows)

    vram = pick(lambda s: _reduce(s, gpus.get("vram_used_mib"), max))
    out["vram_peak_mib"] = _max(vram)
    out["vram_used_mean_mib"] = _mean(vram)
    for way in ("rx", "tx"):
        rate = pick(lambda s, w=way: _reduce(s, gpus.get(f"pcie_{w}_mib_s"), sum))
        out[f"pcie_{way}_mib_s_mean"] = _mean(rate)
        out[f"pcie_{way}_mib_s_peak"] = _max(rate)
    rx, tx = out["pcie_rx_mib_s_mean"], out["pcie_tx_mib_s_mean"]
    if rx is not None and tx is not None and per_token:
        out["pcie_mib_per_token"] = (rx + tx) * duration_s / per_token
    out["gpu_util_pct_mean"] = _mean(pick(lambda s: _reduce(s, gpus.get("gpu_util_pct"), statistics.fmean)))
    out["power_w_mean"] = _mean(pick(lambda s: _reduce(s, gpus.get("power_w"), sum)))
    joules = _energy_j(rows, windows, gpus)
    if joules is None and out["power_w_mean"] is not None:
        joules = out["power_w_mean"] * duration_s
    if joules is not None and per_token:
        out["joules_per_token"] = joules / per_token

    out["rss_peak_mib"] = _max(pick(lambda s: s.get("rss_mib")))
    out["uss_peak_mib"] = _max(pick(lambda s: s.get("uss_mib")))
    out["cpu_pct_mean"] = _interval_mean(rows, "cpu_pct", windows)
    if out["cpu_pct_mean"] is None:
        out["cpu_pct_mean"] = _mean(pick(lambda s: s.get("cpu_pct")))
    other = _interval_mean(rows, _other_cpu_pct, windows)
    if other is None:
        other = _mean(pick(_other_cpu_pct))
    out["other_cpu_pct_mean"] = None if other is None else max(0.0, other)
    swap_io = _interval_values(rows, "swap_io_pages_s", windows) or pick(lambda s: s.get("swap_io_pages_s"))
    out["swap_io_pages_s_peak"] = _max(swap_io)
    ram = pick(lambda s: s.get("ram_available_mib"))
    out["ram_available_min_mib"] = min(ram) if ram else None
    out["swap_used_peak_mib"] = _max(pick(lambda s: s.get("swap_used_mib")))
    out["loopback_mib_s_mean"] = _interval_mean(rows, "loopback_mib_s", windows)
    if out["loopback_mib_s_mean"] is None:
        out["loopback_mib_s_mean"] = _mean(pick(lambda s: s.get("loopback_mib_s")))
    if out["loopback_mib_s_mean"] is not None and per_token:
        out["loopback_mib_per_token"] = out["loopback_mib_s_mean"] * duration_s / per_token
    reasons = pick(lambda s: _reduce(s, gpus.get("clock_event_reasons"), _bit_or))
    out["gpu_throttle_reasons"] = None if not reasons else throttle_names(_bit_or(reasons))
    out["telemetry_samples"] = sum(1 for s in rows if any(a <= s["t_s"] <= b for a, b in windows))
    if gpus:
        indices = {int(_GPU_KEY.match(k).group(1)) for keys in gpus.values() for k in keys}
        out[PER_GPU] = per_gpu_figures(pick, indices)
    return out


def throttle_names(mask: int) -> str:
    """The throttling reasons in an NVML clock event bitmask, "+"-joined in bit order ("" for none)."""
    mask = int(mask) & ~NOT_THROTTLING
    bits = [1 << i for i in range(mask.bit_length()) if mask >> i & 1]
    return "+".join(CLOCK_EVENT_REASONS.get(bit, hex(bit)) for bit in bits)


def _other_cpu_pct(sample: Sample) -> float | None:
    """The host's busy CPU minus the tree's in one sample (signed; None when the tree's is unknown)."""
    host = sample.get("host_cpu_busy_pct")
    if host is None:
        return None
    if "proc_count" not in sample:
        return host  # no tree: everything busy is someone else
    tree = sample.get("cpu_pct")
    return None if tree is None else host - tree


def _bit_or(values: Iterable[float]) -> int:
    mask = 0
    for value in values:
        mask |= int(value)
    return mask


def _gpu_metrics(rows: Sequence[Sample]) -> dict[str, list[str]]:
    """metric -> its per-GPU keys (`vram_used_mib` -> [`gpu0_vram_used_mib`, `gpu1_vram_used_mib`])."""
    found: dict[str, set[str]] = {}
    for row in rows:
        for key in row:
            match = _GPU_KEY.match(key)
            if match:
                found.setdefault(match.group(2), set()).add(key)
    return {metric: sorted(keys, key=lambda k: int(_GPU_KEY.match(k).group(1))) for metric, keys in found.items()}


def _reduce(sample: Sample, keys: list[str] | None, how: Callable[[list[float]], float]) -> float | None:
    values = [sample[k] for k in keys or () if sample.get(k) is not None]
    return how(values) if values else None


def _points(rows: Sequence[Sample], value: Callable[[Sample], float | None]) -> Points:
    points = []
    for row in rows:
        v = value(row)
        if v is not None:
            points.append((row["t_s"], float(v)))
    return points


def _select(points: Points, windows: Sequence[Window]) -> list[float]:
    """Values of the points inside any window; for a window with none inside, its nearest neighbours."""
    times = [t for t, _ in points]
    chosen: set[int] = set()
    for start, end in windows:
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        if hi > lo:
            chosen.update(range(lo, hi))
            continue
        if lo > 0:
            chosen.add(lo - 1)  # the last sample before the window
        if hi < len(points):
            chosen.add(hi)  # the first after it
    return [points[i][1] for i in sorted(chosen)]


def _interval_mean(rows: Sequence[Sample], key: str | Callable[[Sample], float | None],
                   windows: Sequence[Window]) -> float | None:
    """Time-weighted mean of a rate measured over the interval since the previous sample (`loopback_mib_s`,
    `cpu_pct`; `key` a sample's key or a function of the sample): each sample's rate counts for the part of its
    interval inside the windows. None when no interval with that rate overlaps a window."""
    value = (lambda s: s.get(key)) if isinstance(key, str) else key
    total = covered = 0.0
    for prev, row in zip(rows, rows[1:]):
        rate = value(row)
        if rate is None:
            continue
        for start, end in windows:
            overlap = min(end, row["t_s"]) - max(start, prev["t_s"])
            if overlap > 0:
                total += rate * overlap
                covered += overlap
    return total / covered if covered > 0 else None


def _interval_values(rows: Sequence[Sample], key: str, windows: Sequence[Window]) -> list[float]:
    """The rates `key` of the samples whose interval (since the previous sample) overlaps a window."""
    return [row[key] for prev, row in zip(rows, rows[1:]) if row.get(key) is not None
            and any(min(end, row["t_s"]) > max(start, prev["t_s"]) for start, end in windows)]


def _energy_j(rows: Sequence[Sample], windows: Sequence[Window], gpus: dict[str, list[str]]) -> float | None:
    """Joules from the energy counters, or None when some GPU with power data has no usable counter."""
    energy_keys = gpus.get("energy_j", [])
    if not energy_keys:
        return None
    with_energy = {k.split("_", 1)[0] for k in energy_keys}
    with_power = {k.split("_", 1)[0] for k in gpus.get("power_w", [])}
    if not with_power <= with_energy:
        return None
    total = 0.0
    for key in energy_keys:
        points = _points(rows, lambda s, k=key: s.get(k))
        for start, end in windows:
            delta = _counter_delta(points, start, end)
            if delta is None:
                return None
            total += delta
    return total


def _counter_delta(points: Points, start: float, end: float) -> float | None:
    """A monotonic counter's increase from `start` to `end`; None with fewer than two points or on a reset."""
    if len(points) < 2:
        return None
    if end <= start:
        return 0.0
    first_t, last_t = points[0][0], points[-1][0]
    a, b = max(start, first_t), min(end, last_t)
    if b > a:
        delta = _interp(points, b) - _interp(points, a)
        if (a, b) != (start, end):
            delta = delta / (b - a) * (end - start)  # the rate over the covered part, for the whole window
    else:  # the window lies wholly before the first or after the last point
        (t1, e1), (t2, e2) = (points[0], points[1]) if end <= first_t else (points[-2], points[-1])
        if t2 <= t1:
            return None
        delta = (e2 - e1) / (t2 - t1) * (end - start)
    return delta if delta >= 0 else None


def _interp(points: Points, t: float) -> float:
    times = [p[0] for p in points]
    i = bisect.bisect_left(times, t)
    if i < len(points) and points[i][0] == t:
        return points[i][1]
    (t1, e1), (t2, e2) = points[max(i - 1, 0)], points[min(i, len(points) - 1)]
    if t2 == t1:
        return e1
    return e1 + (e2 - e1) * (t - t1) / (t2 - t1)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _max(values: list[float]) -> float | None:
    return max(values) if values else None
