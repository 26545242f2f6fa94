"""Predicted model buffers against an engine's load report, device by device (the reality tests' comparison)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.plan.load_report import EngineReport, agrees
from harness.units import MIB


@dataclass(frozen=True)
class DeviceCheck:
    device: str                 # as the engine reports it: CPU, CUDA0, RPC0[127.0.0.1:50052]
    predicted_bytes: int
    actual_bytes: int | None    # None: the engine reported no model buffer there

    @property
    def ok(self) -> bool:
        actual = self.actual_bytes or 0
        return agrees(self.predicted_bytes / MIB, actual / MIB)


def check_against_report(predicted: dict[str, int], report: EngineReport) -> list[DeviceCheck]:
    actual = report.model_bytes_by_device
    return [DeviceCheck(device, predicted.get(device, 0), actual.get(device))
            for device in sorted(set(predicted) | set(actual))]
