"""The performance model: a test's time is a sum of terms, each a workload quantity times a constant.

    generation:         time = crossings x crossing_s + detours x detour_s
                               + CPU weight bytes x cpu_s_per_byte + accelerator weight bytes x accel_s_per_byte
                               + KV cache bytes x kv_s_per_byte + bus bytes x bus_s_per_byte
    prompt processing:  time = passes x pass_s + crossings x crossing_s
                               + CPU flops x cpu_s_per_flop + accelerator flops x accel_s_per_flop
                               + bus bytes x bus_s_per_byte

Generation has no per-pass constant: on one calibration model the weight bytes per token do not change with the
placement (only where they are read), so a per-token constant and the per-byte ones cannot be told apart; fitted
together, the per-pass constant took the weights' time and a 4x larger model was predicted 2.5x too fast. A fixed
per-token cost is absorbed by the crossings (every pass that uses an accelerator crosses at least twice).

A detour is a pass that leaves the accelerator for the CPU mid-way and comes back (CPU-held experts do, whole-layer
splits do not). Fitted as its own constant (0.93 ms per token for mainline on the RPC rig) it took the median
generation error on models the calibration never saw from 26.6% to 17.8% (benchmarks/model_accuracy.py): a cost
a crossing count does not carry, which the model names without explaining.

tokens/s = tokens / time. The constants are fitted per engine, tool and device (`harness.tune.calibrate`) by
non-negative least squares on relative error; the bus constant is the bus's measured peak (it cannot be told
apart from the crossing cost on few configurations) unless the calibration holds op-offload runs. The roofline
is the same sum with each device at its physical peak and no per-pass or per-crossing cost (generation only:
it is bound by memory; a CPU's arithmetic peak is not something moebench can read).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.perf.workload import Workload
from harness.plan.placement import CPU, is_accelerator

TERMS = {
    "tg": ("crossing_s", "detour_s", "cpu_s_per_byte", "accel_s_per_byte", "kv_s_per_byte"),
    "pp": ("pass_s", "crossing_s", "cpu_s_per_flop", "accel_s_per_flop"),
}
TERM_LABELS = {
    "pass_s": "fixed cost per pass", "crossing_s": "device crossings", "detour_s": "detours to the CPU",
    "cpu_s_per_byte": "reading weights on the CPU", "accel_s_per_byte": "reading weights on the accelerator",
    "kv_s_per_byte": "attention over the KV cache",
    "cpu_s_per_flop": "arithmetic on the CPU", "accel_s_per_flop": "arithmetic on the accelerator",
    "bus": "bytes over the bus",
}


def features(w: Workload) -> dict[str, float]:
    """The quantities each constant multiplies, for this workload."""
    per_device = w.bytes_by_device if w.test.kind == "tg" else w.flops_by_device
    cpu = per_device.get(CPU, 0.0)
    accel = sum(v for d, v in per_device.items() if is_accelerator(d))
    values = {"pass_s": float(w.passes), "crossing_s": float(w.crossings), "detour_s": float(w.detour_passes),
              "cpu_s_per_byte": cpu,
              "accel_s_per_byte": accel, "cpu_s_per_flop": cpu, "accel_s_per_flop": accel,
              "kv_s_per_byte": sum(w.kv_bytes_by_device.values())}
    return {name: values[name] for name in TERMS[w.test.kind]}


@dataclass
class Constants:
    """Fitted constants of one engine, tool and device (seconds per unit)."""

    tg: dict[str, float]
    pp: dict[str, float]
    bus_s_per_byte: float

    def for_kind(self, kind: str) -> dict[str, float]:
        return self.tg if kind == "tg" else self.pp

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Constants":
        return cls(dict(data["tg"]), dict(data["pp"]), float(data["bus_s_per_byte"]))


@dataclass
class Prediction:
    kind: str
    tokens: int
    seconds: float
    terms_s: dict[str, float]                  # each term's seconds (`bus` included)

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def shares(self) -> dict[str, float]:
        """Each term's share of the time, largest first."""
        total = sum(self.terms_s.values()) or 1.0
        return dict(sorted(((k, v / total) for k, v in self.terms_s.items()), key=lambda kv: -kv[1]))

    def dominant(self) -> str:
        return TERM_LABELS[next(iter(self.shares()))]


def predict(w: Workload, constants: Constants) -> Prediction:
    coef = constants.for_kind(w.test.kind)
    terms = {name: value * coef.get(name, 0.0) for name, value in features(w).items()}
    terms["bus"] = w.bus_bytes * constants.bus_s_per_byte
    return Prediction(w.test.kind, w.test.tokens, sum(terms.values()), terms)


@dataclass(frozen=True)
class Peaks:
    """Physical peaks: bytes per second each device's memory reads, and the bus between them."""

    cpu_bytes_s: float
    accel_bytes_s: float
    bus_bytes_s: float
    source: dict[str, str] = field(default_factory=dict)   # where each figure came from

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Peaks":
        return cls(float(data["cpu_bytes_s"]), float(data["accel_bytes_s"]), float(data["bus_bytes_s"]),
                   dict(data.get("source", {})))


def roofline_tps(w: Workload, peaks: Peaks) -> float | None:
    """Generation tokens/s with every device at its peak and no pass or crossing cost (None for prompts)."""
    if w.test.kind != "tg":
        return None
    read = {d: w.bytes_by_device.get(d, 0.0) + w.kv_bytes_by_device.get(d, 0.0)
            for d in set(w.bytes_by_device) | set(w.kv_bytes_by_device)}
    seconds = read.get(CPU, 0.0) / peaks.cpu_bytes_s
    seconds += sum(v for d, v in read.items() if is_accelerator(d)) / peaks.accel_bytes_s
    seconds += w.bus_bytes / peaks.bus_bytes_s
    return w.test.tokens / seconds if seconds > 0 else None
