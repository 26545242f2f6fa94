"""Several accelerators as engine arguments: the RPC servers to register (`--rpc a,b`), the devices to use
(`-dev`), and how the offloaded layers are shared out among them (`-ts`).

`-ts` is emitted where it makes the engine run each layer exactly where the placement says: mainline splits
the offloaded layers (the output layer counted last) by count (`harness.plan.split.split_layers`), so a
placement whose layers form contiguous blocks in device order is `-ts` with the layer count of each device.
ik splits by its own estimate of each layer's bytes (KV cache and compute included; IK: `src/llama.cpp
llm_load_tensors`), which moebench cannot reproduce exactly: there `-ts` (the counts) only steers the layers
(and their KV cache) and every weight on an accelerator gets an explicit `-ot ...=<its buffer type>`, as does
every weight of a placement that is not contiguous. docs/ENGINE_FLAGS.md section 10 has the observations."""

from __future__ import annotations

from harness.errors import UserError
from harness.plan.placement import CPU, Placement, accel, is_accelerator
from harness.plan.split import split_layers, ts_counts

UNKNOWN = "engine-decides"  # a layer's device when the engine's own rule decides it: every weight gets an -ot


def rpc_args(target) -> list[str]:
    """One `--rpc` with every server (ik keeps only the last of repeated ones)."""
    return ["--rpc", ",".join(target.rpc)] if target.rpc else []


def device_args(target) -> list[str]:
    if not target.has("-dev"):
        return []
    return ["-dev", target.engine_tool.list_separator.join(target.devices)]


def layer_split(placement: Placement, target, ngl_places_weights: bool
                ) -> tuple[list[str], tuple[str, ...], str]:
    """(`-ts` arguments, the device the engine will run each layer on, the output layer's device); a device the
    engine decides by itself is `UNKNOWN`, so that every weight there gets an explicit override."""
    layers, output = placement.layer_devices, placement.output_device
    used = sorted({int(d.removeprefix("accel")) for d in (*layers, output) if is_accelerator(d)}
                  | {int(d.removeprefix("accel")) for d in placement.tensor_devices.values() if is_accelerator(d)})
    n = len(target.devices)
    if used and used[-1] >= n:
        raise UserError(f"{placement.describe()} uses {len(used)} accelerators (up to accel{used[-1]}) but "
                        f"{n} {'is' if n == 1 else 'are'} configured ({', '.join(target.buffer_types)})")
    if not ngl_places_weights:
        # ik on RPC devices: with one device -ngl leaves the weights on the CPU (section 1); with two named by
        # -dev it spreads them by its own rule (section 10), so there -ot places every weight, CPU ones too
        if n < 2:
            return [], (CPU,) * len(layers), CPU
        return [], (UNKNOWN,) * len(layers), UNKNOWN
    if n < 2:
        return [], layers, output
    if not target.has("-ts"):
        raise UserError(f"this {target.dialect} {target.tool} has no -ts/--tensor-split to share layers out with")
    counts = ts_counts(layers, output, n)
    exact = counts is not None and target.dialect == "mainline"
    if counts is None:  # not contiguous: give each device as many layers as the placement does, pin the weights
        items = [d for d in (*layers, output) if is_accelerator(d)]
        counts = [items.count(accel(i)) for i in range(n)]
    ts = ["-ts", target.engine_tool.list_separator.join(str(c) for c in counts)]
    if exact:
        return ts, layers, output
    if target.dialect == "mainline" and sum(counts):  # the engine's blocks by its own -ts rule
        blocks = iter(split_layers(sum(counts), counts))
        items = [next(blocks) if is_accelerator(d) else CPU for d in (*layers, output)]
        return ts, tuple(items[:-1]), items[-1]
    return ts, tuple(UNKNOWN if is_accelerator(d) else CPU for d in layers), \
        UNKNOWN if is_accelerator(output) else CPU
