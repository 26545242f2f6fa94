"""custom: the user's own `-ot` list (`PATTERN=BUFFER_TYPE`, several separated by `;` or given as a list),
applied to the model's tensor names the way the engines apply it (regex search, first matching pattern wins)
so that the placement, and the memory it needs, are known before the run."""

from __future__ import annotations

import re

from pydantic import field_validator

from harness.errors import UserError
from harness.plan.placement import CPU, accel, build_placement, loaded_tensors
from strategies.base import Strategy, StrategyParams

_ACCEL_BUFFER = re.compile(r"^(?:CUDA|ROCm|HIP|Vulkan|Metal|SYCL|CANN|MUSA|OpenCL|RPC)(\d*)", re.IGNORECASE)


def buffer_device(buffer_type: str) -> str:
    """Engine buffer type name -> placement device: CPU (and CPU_* host buffers) -> cpu; CUDA1 -> accel1;
    RPC0[host:port] -> accel0."""
    if buffer_type.upper() == "CPU" or buffer_type.upper().startswith("CPU_"):
        return CPU
    match = _ACCEL_BUFFER.match(buffer_type)
    if not match:
        raise UserError(f"strategy custom: unknown buffer type {buffer_type!r}; use CPU or a device name "
                        "such as CUDA0, Vulkan0 or RPC0[host:port]")
    return accel(int(match.group(1) or 0))


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    parsed = []
    for item in items:
        pattern, sep, buffer_type = item.rpartition("=")
        if not sep or not pattern or not buffer_type:
            raise UserError(f"strategy custom: override {item!r} must look like PATTERN=BUFFER_TYPE")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UserError(f"strategy custom: pattern {pattern!r} is not a valid regex: {exc}") from None
        parsed.append((pattern, buffer_type))
    return parsed


class Custom(Strategy):
    name = "custom"
    summary = "your own -ot overrides (PATTERN=CPU;...), applied to the model to know the placement"

    class Params(StrategyParams):
        overrides: tuple[str, ...]

        @field_validator("overrides", mode="before")
        @classmethod
        def _split(cls, value):
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(";") if p.strip())
            return value

    def place(self, model, params):
        rules = [(re.compile(p), buffer_device(b)) for p, b in parse_overrides(list(params.overrides))]
        moved: dict[str, str] = {}
        for tensor in loaded_tensors(model):
            for pattern, device in rules:
                if pattern.search(tensor.name):
                    moved[tensor.name] = device
                    break
        return build_placement(self.name, {"overrides": ";".join(params.overrides)}, model, moved_to=moved)
