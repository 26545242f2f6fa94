"""A placement predicted on a box described by a hardware profile instead of measured: the same workload the
calibrated model uses (`harness.perf.workload`), on one CUDA-like accelerator (it takes operations on RAM-held
weights for big micro-batches: op offload), priced with the prior constants of the profile.

A prompt's op-offload uploads are priced here, not as the workload's bus bytes: per micro-batch, every RAM-held
tensor the accelerator takes (`graph.offloads`: the engines' batch thresholds) costs its bytes over PCIe, of a
routed-expert tensor only the experts the micro-batch uses (both engines copy just those), `experts_touched` at
`routing_draws` independent draws per token; and each layer whose experts are uploaded a fixed `upload_s`: the
router ids read back and waited for before the copy, once per layer (gate, up and down share the ids; both
engines' default: docs/ENGINE_FLAGS.md section 9). The uploads do not overlap the GPU's work (the read-back
waits for it). What makes last-N beat first-N at equal bytes is how many experts a micro-batch touches per
layer: routing concentrates in the later layers, so a later layer's upload copies fewer experts (ik's maintainer,
ik_llama.cpp PR #2262: with `-no-ooae`, whole tensors copied, first-N and last-N tie; `routing_focus` in
`harness.perf.priors`). With ik's `-no-ooae` (`active_experts_only=False`) the whole tensors are copied and no
ids are read back.

Generation without CUDA graphs (`uses_cuda_graphs`: ik with RAM-held tensors) pays `launch_s` per GPU segment
of every pass: its kernels launched one by one once the host has waited for the CPU's part.

Where the upload reads from (`pinned_host_weights`): a pinned (page-locked, `CUDA_Host`) host buffer copies by
DMA at the bus share; a pageable one (the file mapping under mmap) goes through the driver's staging copy, at
`pageable` of that rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.hardware.profile import HardwareProfile
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import TensorGroup, classify_tensor, layer_index
from harness.perf.graph import graph_ops, offloads
from harness.perf.model import TERM_LABELS, Prediction, features, roofline_tps
from harness.perf.priors import PRIOR, Efficiencies, prior_constants, profile_peaks
from harness.perf.workload import Layout, ModelledTest, Workload, experts_touched, workload
from harness.plan.placement import CPU, Placement, is_accelerator

LABELS = {**TERM_LABELS, "upload_s": "ids read back before uploads", "upload_bytes": "uploads over PCIe",
          "launch_s": "kernel launches without CUDA graphs"}


@dataclass(frozen=True)
class DescribedTest:
    kind: str                 # "pp" or "tg"
    tokens: int
    depth: int = 0
    ubatch: int = 512


@dataclass(frozen=True)
class Upload:
    """One micro-batch size's op-offload uploads: how many micro-batches, the ids read-backs (layers whose
    experts are uploaded), whole bytes of the routed-expert tensors per layer (by the layer's depth in the
    model, 0 the first layer, 1 the last) and of the others."""

    tokens: int
    count: int
    readbacks: int
    expert_bytes_by_depth: tuple[tuple[float, float], ...]
    other_bytes: float

    @property
    def expert_bytes(self) -> float:
        return sum(b for _, b in self.expert_bytes_by_depth)


@dataclass
class Quantities:
    """What a described test asks, apart from the efficiencies: the workload, its model features, the bus
    bytes other than uploads, and the uploads per micro-batch size."""

    workload: Workload
    features: dict[str, float]
    bus_other_bytes: float
    uploads: list[Upload] = field(default_factory=list)
    expert_type: str | None = None
    pinned: bool = False                 # RAM-held weights in a pinned host buffer (else pageable)
    active_experts_only: bool = True     # uploads copy only the experts a micro-batch uses (ik: off with -no-ooae)
    cuda_graphs: bool = True             # generation replays each GPU segment as a CUDA graph (`uses_cuda_graphs`)


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


def pinned_host_weights(dialect: str, *, mmap: bool = True, overrides: bool = True) -> bool:
    """Whether the engine keeps RAM-held weights in a pinned (`CUDA_Host`) buffer. Mainline: only without mmap;
    under mmap (the default) its loader turns the host buffer type back into the plain CPU one ("avoid using a
    host buffer when using mmap", `llama-model-loader.cpp`; b11434 only warns that overrides to CPU run with mmap,
    PR #20978). ik: also with mmap asked for, when tensors are overridden to the CPU (`-ot`, `-cmoe`, `-ncmoe`): its
    loader then turns mmap off so the overridden weights land in pinned memory (ik_llama.cpp PRs #1508, #1510;
    `use_mmap_buffer &= !has_buft_overrides`, quoted in PR #2444). `GGML_CUDA_NO_PINNED=1` makes every host
    buffer pageable in both (a table says so with `pinned: false`)."""
    if not mmap:
        return True
    return dialect == "ik" and overrides


def uses_cuda_graphs(dialect: str, placement: Placement) -> bool:
    """Whether generation replays its GPU work as CUDA graphs (one launch per segment instead of one per
    kernel; both engines, batch-1, on recent cards: not on Pascal, llama.cpp PR #27721; the exact gate not read).
    Mainline: also with RAM-held weights, one graph per split keyed by its first node (PR #18934, 2026-01; before
    it, the single graph per device was disabled by the changing splits, PR #18593). ik: with partial offload its
    graph is disabled after a few splits (the maintainer, ik_llama.cpp PR #1040, 2025-12; later ik changes not
    read), so only a model wholly on the GPU gets them."""
    return dialect != "ik" or not any(d == CPU for n, d in placement.tensor_devices.items()
                                      if layer_index(n) is not None)


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
    last_layer = max(model.n_layers - 1, 1)
    out = []
    for tokens, count, outputs in batches:
        moved = [op for op in ops if offloads(op, dialect=layout.dialect, tokens=tokens, outputs=outputs,
                                              model=model, enabled=layout.offload)]
        experts: dict[float, float] = {}
        for op in moved:
            if op.experts:
                depth = (op.layer or 0) / last_layer
                experts[depth] = experts.get(depth, 0.0) + sum(sizes[n] for n in op.tensors)
        others = sum(sizes[n] for op in moved if not op.experts for n in op.tensors)
        out.append(Upload(tokens, count, len({op.layer for op in moved if op.experts}),
                          tuple(sorted(experts.items())), others))
    return out


def quantities(model: ModelInfo, layout: Layout, test: DescribedTest, *, pinned: bool | None = None,
               active_experts_only: bool = True) -> Quantities:
    """`pinned`: where the RAM-held weights are (None: the engine's default under mmap, `pinned_host_weights`)."""
    w = workload(model, layout, ModelledTest(test.kind, test.tokens, test.depth, test.ubatch))
    pinned = pinned_host_weights(layout.dialect) if pinned is None else pinned
    graphs = uses_cuda_graphs(layout.dialect, layout.placement)
    if test.kind == "tg":
        return Quantities(w, features(w), w.bus_bytes, [], expert_type(model), pinned, active_experts_only, graphs)
    return Quantities(w, features(w), w.bus_bytes - w.offload_bytes, _uploads(model, layout, test),
                      expert_type(model), pinned, active_experts_only, graphs)


def touched_share(model: ModelInfo, tokens: int, draws: float, skew: float = 0.0) -> float:
    """The share of a layer's experts `tokens` tokens touch at `draws` independent draws each; with `skew` > 0
    the experts' popularity falls as rank^-skew (a few hot experts, a long cold tail), uniform at 0."""
    if not model.n_experts or not model.n_experts_used:
        return 1.0
    if skew <= 0:
        return experts_touched(model, max(tokens * draws, 1.0))
    weights = np.arange(1, model.n_experts + 1, dtype=float) ** -skew
    picked = np.minimum(1.0, model.n_experts_used * weights / weights.sum())
    return float(np.mean(1.0 - (1.0 - picked) ** max(tokens * draws, 1.0)))


def draws_at(eff: Efficiencies, depth: float) -> float:
    """Independent routing draws per prompt token at a layer `depth` of the way through the model (0 the first
    layer, 1 the last): `routing_draws` at the first, times `routing_focus` at the last, geometric between."""
    return eff.routing_draws * eff.routing_focus ** depth


def expert_upload_bytes(q: Quantities, model: ModelInfo, u: Upload, eff: Efficiencies) -> float:
    """The bytes of the routed experts one micro-batch of `u` copies: whole tensors without only-active-experts,
    else per layer the share of its experts the micro-batch touches at that layer's draws."""
    if not q.active_experts_only:
        return u.expert_bytes
    return sum(b * touched_share(model, u.tokens, draws_at(eff, depth), eff.routing_skew)
               for depth, b in u.expert_bytes_by_depth)


def price(q: Quantities, model: ModelInfo, profile: HardwareProfile, eff: Efficiencies = PRIOR) -> Prediction:
    """Seconds per term of the described test: the model's terms with the prior constants, the bus at the
    PCIe share, and for a prompt each upload's wait and bytes."""
    constants = prior_constants(profile, eff, q.expert_type)
    coef = constants.for_kind(q.workload.test.kind)
    terms = {name: value * coef.get(name, 0.0) for name, value in q.features.items()}
    terms["bus"] = q.bus_other_bytes * constants.bus_s_per_byte
    if q.workload.test.kind == "tg" and not q.cuda_graphs:
        # each GPU segment entered (half the crossings) launches its kernels one by one after the host's wait
        terms["launch_s"] = q.workload.crossings / 2 * eff.launch_s
    if q.uploads:
        readbacks = sum(u.count * u.readbacks for u in q.uploads) if q.active_experts_only else 0
        terms["upload_s"] = readbacks * eff.upload_s
        source = 1.0 if q.pinned or profile.upload_gb_s else eff.pageable   # a measured rate is the box's own
        terms["upload_bytes"] = sum(u.count * (expert_upload_bytes(q, model, u, eff) + u.other_bytes)
                                    for u in q.uploads) * constants.bus_s_per_byte / source
    test = q.workload.test
    return Prediction(test.kind, test.tokens, sum(terms.values()), terms)


def overrides_to_cpu(placement: Placement) -> bool:
    """Whether the placement keeps tensors of an accelerator-run layer in RAM (what `-ot`/`-ncmoe` say)."""
    return any(device == CPU and (layer := layer_index(name)) is not None
               and is_accelerator(placement.layer_devices[layer])
               for name, device in placement.tensor_devices.items())


def predict_described(model: ModelInfo, layout: Layout, test: DescribedTest, profile: HardwareProfile,
                      eff: Efficiencies = PRIOR, *, mmap: bool = True) -> DescribedPrediction:
    pinned = pinned_host_weights(layout.dialect, mmap=mmap, overrides=overrides_to_cpu(layout.placement))
    q = quantities(model, layout, test, pinned=pinned)
    return DescribedPrediction(q.workload, price(q, model, profile, eff),
                               roofline_tps(q.workload, profile_peaks(profile)))


def predict_on_profile(model: ModelInfo, placement: Placement, profile: HardwareProfile, *, dialect: str,
                       prompt_tokens: int, gen_tokens: int, depth: int, ubatch: int, op_offload: bool = True,
                       cache_type_k: str = "f16", cache_type_v: str = "f16", mmap: bool = True,
                       eff: Efficiencies = PRIOR) -> list[dict]:
    """`moebench predict --hardware`: the prompt and generation tests of one placement on the described box,
    each with its predicted and roofline tokens/s and where the time goes."""
    layout = described_layout(placement, dialect=dialect, op_offload=op_offload, cache_type_k=cache_type_k,
                              cache_type_v=cache_type_v)
    out = []
    for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens)):
        found = predict_described(model, layout, DescribedTest(kind, tokens, depth, ubatch), profile, eff,
                                  mmap=mmap)
        out.append({"test": f"{kind}{tokens}" + (f"@d{depth}" if depth else ""), "predicted_tps": found.tps,
                    "roofline_tps": found.roofline_tps,
                    "shares": {LABELS[k]: v for k, v in found.prediction.shares().items()},
                    "terms_s": found.prediction.terms_s,
                    "bus_bytes": found.workload.bus_bytes, "bytes_by_device": found.workload.bytes_by_device})
    return out


def first_vs_last(model: ModelInfo, first: Placement, last: Placement, profile: HardwareProfile, *, dialect: str,
                  prompt_tokens: int, gen_tokens: int, depth: int, ubatch: int, op_offload: bool = True,
                  cache_type_k: str = "f16", cache_type_v: str = "f16", mmap: bool = True,
                  eff: Efficiencies = PRIOR) -> dict[str, dict]:
    """first-n-experts(n) against last-n-experts(n) on the described box, per test: both tokens/s, the ratio
    last/first, and the term whose seconds differ most (None where no term differs: a tie by construction)."""
    placed = {"first-n-experts": first, "last-n-experts": last}
    out = {}
    for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens)):
        test = DescribedTest(kind, tokens, depth, ubatch)
        found = {name: predict_described(model, described_layout(p, dialect=dialect, op_offload=op_offload,
                                                                 cache_type_k=cache_type_k,
                                                                 cache_type_v=cache_type_v), test, profile, eff,
                                                 mmap=mmap)
                 for name, p in placed.items()}
        first, last = found["first-n-experts"].prediction, found["last-n-experts"].prediction
        deltas = {k: first.terms_s.get(k, 0.0) - last.terms_s.get(k, 0.0)
                  for k in set(first.terms_s) | set(last.terms_s)}
        term = max(deltas, key=lambda k: abs(deltas[k])) if deltas else None
        tie = term is None or abs(deltas[term]) <= 1e-9 * max(first.seconds, 1e-12)
        out[kind] = {"first_tps": first.tps, "last_tps": last.tps, "last_over_first": last.tps / first.tps,
                     "term": None if tie else LABELS[term], "term_s_saved_by_last": 0.0 if tie else deltas[term]}
    return out

