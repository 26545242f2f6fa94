"""Device splits: how the layers a placement runs on accelerators are shared out among several of them.

A split is a list of positive weights, one per accelerator (`[3, 1]`: accel0 three parts, accel1 one). Layers
are given out in order, as contiguous blocks, accel0 first, so that every block is what `-ts` makes:

- `split_layers` follows mainline's `-ts` rule exactly (M: `src/llama-model.cpp load_tensors`): of the `n`
  offloaded layers (the output layer counts as the last), layer `j` goes to the first device whose cumulative
  share exceeds `j / n` (`std::upper_bound` over the normalized cumulative split).
- `balanced_layers` chooses the block boundaries by bytes instead: each device gets layers worth about its
  share of the bytes the accelerators hold (what `experts-balanced` uses: a layer whose experts stay in RAM
  weighs less than one whose experts are on the device).

`ts_counts` turns a placement's layer devices back into the `-ts` values that reproduce them (the number of
layers of each device), or None when they are not contiguous blocks in device order (then only `-ot` can place
the weights; the engine still runs each layer where its own `-ts` rule puts it).
"""

from __future__ import annotations

import bisect
from typing import Sequence

from harness.errors import UserError
from harness.plan.placement import CPU, accel, is_accelerator


def check_split(split: Sequence[float] | None, n_devices: int | None = None, *, who: str = "split") -> list[float]:
    """The split as floats (default: one device); a mistake is a UserError naming the values."""
    values = [float(v) for v in (split or [1.0])]
    if any(v < 0 for v in values) or not any(v > 0 for v in values):
        raise UserError(f"{who}: {list(split or [])} must be weights >= 0, at least one of them > 0")
    if n_devices is not None and len(values) > n_devices:
        raise UserError(f"{who}: {len(values)} parts but the sweep has {n_devices} accelerator"
                        f"{'s' if n_devices != 1 else ''}")
    return values


def _cumulative(split: Sequence[float]) -> list[float]:
    """mainline's split points: float32-like running sums, normalized (computed in Python floats; for the
    small integer-valued splits moebench emits both give the same boundaries)."""
    total, points = 0.0, []
    for value in split:
        total += value
        points.append(total)
    return [p / total for p in points]


def split_layers(n: int, split: Sequence[float]) -> list[str]:
    """Device (`accel0`, ...) of each of `n` offloaded layers (the output layer last), by mainline's -ts rule."""
    points = _cumulative(check_split(split))
    return [accel(min(bisect.bisect_right(points, j / n), len(points) - 1)) for j in range(n)]


def offload(n_layers: int, first: int, split: Sequence[float] | None) -> tuple[tuple[str, ...], str]:
    """(layer devices, output device): layers before `first` on the CPU, the others and the output layer
    shared out over the accelerators by `split_layers` (all on accel0 without a split)."""
    devices = split_layers(n_layers - first + 1, split or [1.0])
    return (CPU,) * first + tuple(devices[:-1]), devices[-1]


def balanced_layers(layer_bytes: Sequence[int], split: Sequence[float]) -> list[str]:
    """Device of each layer (in order, contiguous blocks) so that each device holds about its share of the
    bytes: device d's block ends where the running total of bytes is nearest its cumulative share."""
    points = _cumulative(check_split(split))
    prefix = [0]
    for size in layer_bytes:
        prefix.append(prefix[-1] + size)
    bounds, start = [], 0
    for point in points[:-1]:
        target = point * prefix[-1]
        start = min(range(start, len(prefix)), key=lambda m: (abs(prefix[m] - target), m))
        bounds.append(start)
    return [accel(bisect.bisect_right(bounds, i)) for i in range(len(layer_bytes))]


def ts_counts(layer_devices: Sequence[str], output_device: str, n_accelerators: int) -> list[int] | None:
    """The `-ts` values (layers per accelerator, the output layer included) that make mainline run the
    placement's offloaded layers where it says, or None when they are not contiguous blocks in device order
    or layers on the CPU come after offloaded ones."""
    items = [*layer_devices, output_device]
    offloaded = [d for d in items if is_accelerator(d)]
    if not offloaded:
        return None
    first = items.index(offloaded[0])
    if any(d == CPU for d in items[first:]):
        return None
    order = [int(d.removeprefix("accel")) for d in offloaded]
    if order != sorted(order):
        return None
    counts = [order.count(i) for i in range(n_accelerators)]
    return counts if sum(counts) == len(offloaded) else None
