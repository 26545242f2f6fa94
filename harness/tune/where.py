"""Where `moebench tune` places the model when the user does not say: the accelerator the engine lists first
(the RPC rig when it lists none, said so), and the VRAM budget that accelerator leaves: its free memory as the
engine reports it (`--list-devices`; NVML for a CUDA device the engine does not size; the host's memory for the
rig's server, whose CPU backend reports the host as free) less the margin llama.cpp's own `--fit` leaves free
(`common/fit.cpp`: 1024 MiB per device, `-fitt`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil

from harness.engines.discover import find_engine_entry
from harness.engines.rpc import RpcServer
from harness.errors import UserError
from harness.telemetry.nvml import shared_nvml
from harness.units import MIB

FIT_MARGIN_MIB = 1024   # mainline common/fit.cpp: the memory --fit leaves free on each device by default


@dataclass(frozen=True)
class Where:
    rpc_rig: bool
    device: str | None
    free_mib: float | None
    said: str                          # how it was found, for the answer


def accelerator_free_mib(engine_entry: dict, *, rpc_rig: bool, device: str | None) -> tuple[str | None, float | None]:
    """(the accelerator's name, its free MiB) as the engine lists it: the named device, else the first
    accelerator; None for what the engine does not say."""
    engine = find_engine_entry(engine_entry)
    if rpc_rig:
        with RpcServer(engine, threads=1) as rpc:
            devices = engine.devices(rpc=[rpc.endpoint])
    else:
        devices = engine.devices()
    accel = [d for d in devices or [] if d.is_accelerator and (rpc_rig or device is None or d.name == device)]
    name = accel[0].name if accel else device
    free = accel[0].free_mib if accel else None
    if free is None and devices is None:  # ik lists none: NVML, or the rig's host
        free = psutil.virtual_memory().total / MIB if rpc_rig else _nvml_free_mib(device)
    return name, free


def _nvml_free_mib(device: str | None) -> float | None:
    nvml = shared_nvml()
    index = int(m.group(1)) if device and (m := re.fullmatch(r"CUDA(\d+)", device)) else 0
    free = nvml.free_bytes(index) if nvml is not None else None
    return free / MIB if free is not None else None


def find_where(engine_entry: dict, *, rpc_rig: bool, device: str | None) -> Where:
    """The device to tune for: as given, else the engine's first accelerator, else the RPC rig."""
    if rpc_rig:
        _, free = accelerator_free_mib(engine_entry, rpc_rig=True, device=None)
        return Where(True, None, free, "the RPC rig (--rpc-rig)")
    name, free = accelerator_free_mib(engine_entry, rpc_rig=False, device=device)
    if device is not None:
        return Where(False, device, free, f"{device} (--device)")
    if name is not None:
        return Where(False, name, free, f"{name}, the first accelerator the engine lists")
    _, free = accelerator_free_mib(engine_entry, rpc_rig=True, device=None)
    return Where(True, None, free, "the RPC rig: the engine lists no accelerator on this machine")


def default_budget_mib(where: Where) -> float:
    """The accelerator's free memory less --fit's margin."""
    if where.free_mib is None:
        raise UserError(f"the engine does not say how much memory {where.device or 'its accelerator'} has free; "
                        "give --vram-budget-mib")
    budget = where.free_mib - FIT_MARGIN_MIB
    if budget <= 0:
        raise UserError(f"{where.device or 'the accelerator'} has {where.free_mib:.0f} MiB free, less than the "
                        f"{FIT_MARGIN_MIB} MiB --fit leaves; give --vram-budget-mib")
    return budget
