"""What one test asks of each device for one placement: the quantities the performance model multiplies by
its constants. Everything is a total for the whole test (divide by `tokens` for per-token figures).

- **Weight bytes read** (generation): per token, every tensor outside the routed experts whole, each layer's
  routed experts at their active share `experts_used / experts`, one row of the embedding, the output matrix;
  and, apart, the **KV cache bytes** attention reads (the context so far, on the cache's device): attention
  over a long context costs more per byte than a matrix-vector product (the calibration measured ~20% too
  fast a prediction at depth 512 while the two were one term).
- **Arithmetic** (prompt processing): 2 flops per weight per token (routed experts at their active share, the
  output matrix for the one token whose logits are kept), and attention's 2 x heads x (k + v head size) per
  pair of tokens, on the device of the cache.
- **Passes and crossings:** generation makes one pass per token, prompt processing one per micro-batch;
  each pass crosses between devices `crossings` times (`harness.perf.graph`).
- **Bus bytes:** the f32 activations each crossing carries (n_embd per token), the logits coming back, and the
  weights copied to the accelerator per micro-batch when it offloads operations on CPU-held weights (for
  expert matrices only the experts the micro-batch uses: both engines copy just those).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from harness.models.attention import kv_bytes_of_layer
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import TensorGroup, classify_tensor
from harness.perf.graph import Op, crossings, detours, graph_ops, offloads, run_devices, segments
from harness.plan.flags import Target, ngl_places_weights
from harness.knobs import Knobs
from harness.plan.memory import cache_type_bytes
from harness.plan.placement import CPU, Placement, loaded_tensors

ACTIVATION_BYTES = 4      # f32 activations between backends


@dataclass(frozen=True)
class ModelledTest:
    """A test as the performance model sees it (no measurement in it): `pp` (a prompt of `tokens` tokens) or `tg`
    (`tokens` generated), after `depth` tokens already in the context, in micro-batches of `ubatch` tokens."""

    kind: str
    tokens: int
    depth: int = 0
    ubatch: int = 512


@dataclass(frozen=True)
class Layout:
    """A placement as an engine realizes it: where each layer's KV cache is, whether the accelerator takes
    operations on CPU-held weights for big batches (op offload), and the KV cache types."""

    placement: Placement
    dialect: str = "mainline"
    accelerator: str = "accel0"
    kv_devices: tuple[str, ...] | None = None       # None: where the placement runs each layer
    offload: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"


def offloads_ops(buffer_type: str) -> bool:
    """Whether an accelerator's backend takes operations on CPU-held weights (`offload_op`): CUDA, Vulkan,
    Metal, SYCL do; an RPC server does not (NULL in both engines' ggml-rpc)."""
    return not buffer_type.startswith("RPC")


def layout_for(placement: Placement, target: Target, knobs: Knobs) -> Layout:
    """How `target`'s engine realizes `placement` with `knobs`: ik on an RPC device keeps every layer's KV
    cache on the CPU (its weights get there only by -ot; docs/ENGINE_FLAGS.md section 1)."""
    kv = None if ngl_places_weights(target) else (CPU,) * len(placement.layer_devices)
    return Layout(placement, target.dialect, "accel0", kv,
                  offloads_ops(target.buffer_type) and knobs.op_offload is not False,
                  knobs.cache_type_k, knobs.cache_type_v)


@dataclass
class Workload:
    test: ModelledTest
    passes: int
    segments: int                      # backend segments of one pass (the engines' "graph splits")
    crossings: int                     # device changes over the whole test (logits back to the host included)
    bytes_by_device: dict[str, float]  # weights read (generation), whole test
    flops_by_device: dict[str, float]  # arithmetic (prompt processing), whole test
    bus_bytes: float                   # activations, logits and offloaded weights over the bus, whole test
    offload_bytes: float = 0.0         # the offloaded weights' share of bus_bytes
    kv_bytes_by_device: dict[str, float] = field(default_factory=dict)  # KV cache read (generation), whole test
    detour_passes: int = 0             # passes that leave the accelerator for the CPU mid-way (`graph.detours`)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Workload":
        """A workload as `to_dict` wrote it (configurations.json)."""
        return cls(**{**data, "test": ModelledTest(**data["test"])})


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 0


def experts_touched(model: ModelInfo, tokens: int) -> float:
    """The expected share of a layer's experts a micro-batch of `tokens` tokens uses (uniform routing)."""
    if not model.n_experts or not model.n_experts_used:
        return 1.0
    return 1.0 - (1.0 - model.n_experts_used / model.n_experts) ** tokens


def workload(model: ModelInfo, layout: Layout, test: ModelledTest) -> Workload:
    placement = layout.placement
    kv_devices = layout.kv_devices or placement.layer_devices
    ops = graph_ops(model, placement, kv_devices)
    if test.kind == "tg":
        return _generation(model, layout, test, ops, kv_devices)
    return _prompt(model, layout, test, ops, kv_devices)


def _share(model: ModelInfo, name: str) -> float:
    """The part of a tensor one token uses: the routed experts' active share, one row of the embedding."""
    group = classify_tensor(name)
    if group is TensorGroup.ROUTED_EXPERTS and model.n_experts and model.n_experts_used:
        return model.n_experts_used / model.n_experts
    if group is TensorGroup.EMBEDDINGS:
        return 1.0 / max(model.vocab_size, 1)
    return 1.0


@dataclass(frozen=True)
class _PerToken:
    """Cache settings for bytes per cached token (harness.models.attention.CacheSettings)."""

    dialect: str
    cache_type_k: str
    cache_type_v: str
    n_ctx: int = 1024
    n_ubatch: int = 512
    flash_attn: bool = True
    mla_mode: int | None = None
    swa_full: bool = True
    n_seq: int = 1


def _kv_read_bytes(model: ModelInfo, layout: Layout, layer: int, context: float) -> float:
    """The cache bytes layer `layer` reads for one generated token at `context`: its bytes per cached token
    (harness.models.attention: MLA's latent, K and V otherwise) times the tokens it attends to (a sliding window
    at most); a recurrent layer reads its state."""
    shape = model.attention
    if layer in shape.recurrent_layers:
        return 4.0 * shape.recurrent_state_elements(layout.dialect)
    settings = _PerToken(layout.dialect, layout.cache_type_k, layout.cache_type_v)
    per_token = kv_bytes_of_layer(shape, layer, settings, cache_type_bytes) / settings.n_ctx
    tokens = min(context, shape.sliding_window) if layer in shape.swa_layers else context
    return per_token * tokens


def _borrowing(ops: list[Op], layout: Layout) -> list[Op] | None:
    """The ops whose borrowed weights start a split: mainline's. ik on an RPC device keeps the cache on the CPU
    and its attention there makes no extra split for gpt-oss's attn_sinks held on the RPC device (seen: 14
    splits for tiny-gpt-oss all on RPC, not 20), so ik's splits are counted by devices alone."""
    return ops if layout.dialect == "mainline" else None


def _run_layers(model: ModelInfo, kv_devices: tuple[str, ...]) -> list[str]:
    return list(kv_devices[: model.n_layers - model.nextn_predict_layers])


def _generation(model: ModelInfo, layout: Layout, test: ModelledTest, ops: list[Op], kv_devices) -> Workload:
    devices = run_devices(ops, layout.accelerator)
    per_token: dict[str, float] = {}
    for tensor in loaded_tensors(model):
        device = layout.placement.tensor_devices[tensor.name]
        per_token[device] = per_token.get(device, 0.0) + tensor.n_bytes * _share(model, tensor.name)
    context = test.depth + test.tokens / 2  # the cache grows from depth to depth + tokens
    kv: dict[str, float] = {}
    for layer, device in enumerate(_run_layers(model, kv_devices)):
        kv[device] = kv.get(device, 0.0) + _kv_read_bytes(model, layout, layer, context) * test.tokens
    n_cross = crossings(devices)
    bus = _bus_bytes_per_pass(model, devices, tokens=1, outputs=1)
    return Workload(test, test.tokens, segments(devices, _borrowing(ops, layout)), n_cross * test.tokens,
                    {d: b * test.tokens for d, b in per_token.items()}, {}, bus * test.tokens,
                    kv_bytes_by_device=kv, detour_passes=test.tokens if detours(devices) else 0)


def _bus_bytes_per_pass(model: ModelInfo, devices: list[str], *, tokens: int, outputs: int) -> float:
    """Activations across the crossings inside the pass, and the logits back to the host when the pass ends on
    an accelerator (the last of its `crossings`)."""
    logits_back = bool(devices) and devices[-1] != CPU
    out = (crossings(devices) - logits_back) * tokens * model.n_embd * ACTIVATION_BYTES
    return out + (outputs * model.vocab_size * ACTIVATION_BYTES if logits_back else 0.0)


def _offloaded(ops: list[Op], model: ModelInfo, layout: Layout, *, tokens: int, outputs: int) -> set[int]:
    """The ops (by index) the accelerator takes over for a micro-batch of `tokens` tokens (`graph.offloads`)."""
    return {i for i, op in enumerate(ops)
            if offloads(op, dialect=layout.dialect, tokens=tokens, outputs=outputs, model=model,
                        enabled=layout.offload)}


def _prompt(model: ModelInfo, layout: Layout, test: ModelledTest, ops: list[Op], kv_devices) -> Workload:
    sizes = {t.name: t for t in model.tensors}
    flops: dict[str, float] = {}
    bus = offload_total = 0.0
    passes, n_cross, n_detours, first_devices = 0, 0, 0, None
    remaining = test.tokens
    while remaining > 0:
        tokens = min(test.ubatch, remaining)
        done = test.tokens - remaining
        outputs = 1 if remaining == tokens else 0  # the last token's logits only
        moved = _offloaded(ops, model, layout, tokens=tokens, outputs=outputs)
        devices = run_devices(ops, layout.accelerator, moved)
        first_devices = first_devices or devices
        for i, op in enumerate(ops):
            for name in op.tensors:
                record = sizes[name]
                if op.lookup:
                    continue
                batch = outputs if op.logits else tokens
                flops[devices[i]] = flops.get(devices[i], 0.0) + 2 * _elements(record.shape) * _share(
                    model, name) * batch
                if i in moved:
                    copied = record.n_bytes * (experts_touched(model, tokens) if op.experts else 1.0)
                    offload_total += copied
        bus += _bus_bytes_per_pass(model, devices, tokens=tokens, outputs=outputs)
        n_cross += crossings(devices)
        n_detours += detours(devices)
        # attention: every token against the context before it (causal), on the layer's cache device
        pairs = tokens * (test.depth + done) + tokens * (tokens + 1) / 2
        per_pair = 2 * model.n_head * (model.head_dim_k + model.head_dim_v)
        for device in _run_layers(model, kv_devices):
            flops[device] = flops.get(device, 0.0) + per_pair * pairs
        passes += 1
        remaining -= tokens
    first_devices = first_devices or run_devices(ops, layout.accelerator)
    return Workload(test, passes, segments(first_devices, _borrowing(ops, layout)), n_cross, {}, flops,
                    bus + offload_total, offload_total, detour_passes=n_detours)


def reported_splits(model: ModelInfo, layout: Layout, ubatch: int) -> int:
    """The graph splits an engine logs for this layout: those of the graph it reserves, a micro-batch of
    `ubatch` tokens all producing logits."""
    ops = graph_ops(model, layout.placement, layout.kv_devices)
    return segments(run_devices(ops, layout.accelerator, _offloaded(ops, model, layout, tokens=ubatch,
                                                                    outputs=ubatch)), _borrowing(ops, layout))
