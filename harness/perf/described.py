"""A placement predicted on a box described by a hardware profile instead of measured: the same workload the
calibrated model uses (`harness.perf.workload`), on one CUDA-like accelerator (it takes operations on RAM-held
weights for big micro-batches: op offload), priced with the prior constants of the profile.

A prompt's op-offload uploads are priced here, not as the workload's bus bytes: per micro-batch, every RAM-held
tensor the accelerator takes (`graph.offloads`: the engines' batch thresholds) costs its bytes over PCIe, of a
routed-expert tensor only the experts the micro-batch uses (both engines copy just those), `experts_touched` at
`routing_draws` independent draws per token; and each layer whose experts are uploaded a fixed `upload_s`: the
router ids read back and waited for before the copy, once per layer (gate, up and down share the ids; both
engines' default: docs/ENGINE_FLAGS.md section 9). The uploads do not overlap the GPU's
work (the read-back waits for it), so first-N and last-N at equal bytes cost the same here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.hardware.profile import HardwareProfile
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import TensorGroup, classify_tensor
from harness.perf.graph import graph_ops, offloads
from harness.perf.model import TERM_LABELS, Prediction, features, roofline_tps
from harness.perf.priors import PRIOR, Efficiencies, prior_constants, profile_peaks
from harness.perf.workload import Layout, ModelledTest, Workload, experts_touched, workload
from harness.plan.placement import Placement

LABELS = {**TERM_LABELS, "upload_s": "ids read back before uploads", "upload_bytes": "uploads over PCIe"}


@dataclass(frozen=True)
class DescribedTest:
    kind: str                 # "pp" or "tg"
    tokens: int
    depth: int = 0
    ubatch: int = 512


@dataclass(frozen=True)
class Upload:
    """One micro-batch size's op-offload uploads: how many micro-batches, the ids read-backs (layers whose
    experts are uploaded), whole bytes of the routed-expert tensors and of the others."""

    tokens: int
    count: int
    readbacks: int
    expert_bytes: float
    other_bytes: float


@dataclass
class Quantities:
    """What a described test asks, apart from the efficiencies: the workload, its model features, the bus
    bytes other than uploads, and the uploads per micro-batch size."""

    workload: Workload
    features: dict[str, float]
    bus_other_bytes: float
    uploads: list[Upload] = field(default_factory=list)
    expert_type: str | None = None


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


def expert_type(model: ModelInfo) -> str | None:
    """The type most of the routed experts' bytes are in (what a prompt's arithmetic mostly runs on)."""
    by_type: dict[str, int] = {}
    for t in model.tensors:
        if classify_tensor(t.name) is TensorGroup.ROUTED_EXPERTS:
            by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
    return max(by_type, key=by_type.get) if by_type else None


def _uploads(model: ModelInfo, layout: Layout, test: DescribedTest) -> list[Upload]:
    ops = graph_ops(model, layout.placement, layout.kv_devices or layout.placement.layer_devices)
    sizes = {t.name: t.n_bytes for t in model.tensors}
    full, last = divmod(test.tokens, test.ubatch)
    batches = [(test.ubatch, full - (0 if last else 1), 0)] if full - (0 if last else 1) > 0 else []
    batches.append((last or test.ubatch, 1, 1))   # the last micro-batch keeps one token's logits
    out = []
    for tokens, count, outputs in batches:
        moved = [op for op in ops if offloads(op, dialect=layout.dialect, tokens=tokens, outputs=outputs,
                                              model=model, enabled=layout.offload)]
        experts = sum(sizes[n] for op in moved if op.experts for n in op.tensors)
        others = sum(sizes[n] for op in moved if not op.experts for n in op.tensors)
        out.append(Upload(tokens, count, len({op.layer for op in moved if op.experts}), experts, others))
    return out


def quantities(model: ModelInfo, layout: Layout, test: DescribedTest) -> Quantities:
    w = workload(model, layout, ModelledTest(test.kind, test.tokens, test.depth, test.ubatch))
    if test.kind == "tg":
        return Quantities(w, features(w), w.bus_bytes, [], expert_type(model))
    return Quantities(w, features(w), w.bus_bytes - w.offload_bytes, _uploads(model, layout, test),
                      expert_type(model))


def _touched(model: ModelInfo, tokens: int, draws: float) -> float:
    return experts_touched(model, max(tokens * draws, 1.0)) if model.n_experts else 1.0


def price(q: Quantities, model: ModelInfo, profile: HardwareProfile, eff: Efficiencies = PRIOR) -> Prediction:
    """Seconds per term of the described test: the model's terms with the prior constants, the bus at the
    PCIe share, and for a prompt each upload's wait and bytes."""
    constants = prior_constants(profile, eff, q.expert_type)
    coef = constants.for_kind(q.workload.test.kind)
    terms = {name: value * coef.get(name, 0.0) for name, value in q.features.items()}
    terms["bus"] = q.bus_other_bytes * constants.bus_s_per_byte
    if q.uploads:
        terms["upload_s"] = sum(u.count * u.readbacks for u in q.uploads) * eff.upload_s
        terms["upload_bytes"] = sum(u.count * (u.expert_bytes * _touched(model, u.tokens, eff.routing_draws)
                                               + u.other_bytes) for u in q.uploads) * constants.bus_s_per_byte
    test = q.workload.test
    return Prediction(test.kind, test.tokens, sum(terms.values()), terms)


def predict_described(model: ModelInfo, layout: Layout, test: DescribedTest, profile: HardwareProfile,
                      eff: Efficiencies = PRIOR) -> DescribedPrediction:
    q = quantities(model, layout, test)
    return DescribedPrediction(q.workload, price(q, model, profile, eff),
                               roofline_tps(q.workload, profile_peaks(profile)))


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
                    "shares": {LABELS[k]: v for k, v in found.prediction.shares().items()},
                    "terms_s": found.prediction.terms_s,
                    "bus_bytes": found.workload.bus_bytes, "bytes_by_device": found.workload.bytes_by_device})
    return out


def first_vs_last(model: ModelInfo, first: Placement, last: Placement, profile: HardwareProfile, *, dialect: str,
                  prompt_tokens: int, gen_tokens: int, depth: int, ubatch: int, op_offload: bool = True,
                  cache_type_k: str = "f16", cache_type_v: str = "f16", eff: Efficiencies = PRIOR) -> dict[str, dict]:
    """first-n-experts(n) against last-n-experts(n) on the described box, per test: both tokens/s, the ratio
    last/first, and the term whose seconds differ most (None where no term differs: a tie by construction)."""
    placed = {"first-n-experts": first, "last-n-experts": last}
    out = {}
    for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens)):
        test = DescribedTest(kind, tokens, depth, ubatch)
        found = {name: predict_described(model, described_layout(p, dialect=dialect, op_offload=op_offload,
                                                                 cache_type_k=cache_type_k,
                                                                 cache_type_v=cache_type_v), test, profile, eff)
                 for name, p in placed.items()}
        first, last = found["first-n-experts"].prediction, found["last-n-experts"].prediction
        deltas = {k: first.terms_s.get(k, 0.0) - last.terms_s.get(k, 0.0)
                  for k in set(first.terms_s) | set(last.terms_s)}
        term = max(deltas, key=lambda k: abs(deltas[k])) if deltas else None
        tie = term is None or abs(deltas[term]) <= 1e-9 * max(first.seconds, 1e-12)
        out[kind] = {"first_tps": first.tps, "last_tps": last.tps, "last_over_first": last.tps / first.tps,
                     "term": None if tie else LABELS[term], "term_s_saved_by_last": 0.0 if tie else deltas[term]}
    return out

