"""A placement predicted on a box described by a hardware profile instead of measured: the same workload the
calibrated model uses (`harness.perf.workload`), on one CUDA-like accelerator (it takes operations on RAM-held
weights for big micro-batches: op offload), priced with the prior constants of the profile."""

from __future__ import annotations

from dataclasses import dataclass

from harness.hardware.profile import HardwareProfile
from harness.models.inspect import ModelInfo
from harness.perf.model import TERM_LABELS, Prediction, predict, roofline_tps
from harness.perf.priors import PRIOR, Efficiencies, prior_constants, profile_peaks
from harness.perf.workload import Layout, MeasuredTest, Workload, workload
from harness.plan.placement import Placement


@dataclass(frozen=True)
class DescribedTest:
    kind: str                 # "pp" or "tg"
    tokens: int
    depth: int = 0
    ubatch: int = 512


@dataclass
class DescribedPrediction:
    workload: Workload
    prediction: Prediction
    roofline_tps: float | None

    @property
    def tps(self) -> float:
        return self.prediction.tps


def described_layout(placement: Placement, *, dialect: str, op_offload: bool = True, cache_type_k: str = "f16",
                     cache_type_v: str = "f16") -> Layout:
    """How an engine on a GPU realizes the placement: each layer's KV cache where the layer runs, op offload on
    (both engines' default on CUDA) unless turned off."""
    return Layout(placement, dialect, "accel0", None, op_offload, cache_type_k, cache_type_v)


def predict_described(model: ModelInfo, layout: Layout, test: DescribedTest, profile: HardwareProfile,
                      eff: Efficiencies = PRIOR) -> DescribedPrediction:
    w = workload(model, layout, MeasuredTest(test.kind, test.tokens, test.depth, test.ubatch))
    return DescribedPrediction(w, predict(w, prior_constants(profile, eff)), roofline_tps(w, profile_peaks(profile)))


def predict_on_profile(model: ModelInfo, placement: Placement, profile: HardwareProfile, *, dialect: str,
                       prompt_tokens: int, gen_tokens: int, depth: int, ubatch: int, op_offload: bool = True,
                       cache_type_k: str = "f16", cache_type_v: str = "f16",
                       eff: Efficiencies = PRIOR) -> list[dict]:
    """`moebench predict --hardware`: the prompt and generation tests of one placement on the described box,
    each with its predicted and roofline tokens/s and where the time goes."""
    layout = described_layout(placement, dialect=dialect, op_offload=op_offload, cache_type_k=cache_type_k,
                              cache_type_v=cache_type_v)
    out = []
    for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens)):
        found = predict_described(model, layout, DescribedTest(kind, tokens, depth, ubatch), profile, eff)
        out.append({"test": f"{kind}{tokens}" + (f"@d{depth}" if depth else ""), "predicted_tps": found.tps,
                    "roofline_tps": found.roofline_tps,
                    "shares": {TERM_LABELS[k]: v for k, v in found.prediction.shares().items()},
                    "bus_bytes": found.workload.bus_bytes, "bytes_by_device": found.workload.bytes_by_device})
    return out
