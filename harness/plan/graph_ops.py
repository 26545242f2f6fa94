"""The ggml operations the reserve graphs are built from, as nodes of a `harness.plan.graph_alloc.Graph`: the
bytes each result takes (ggml_nbytes of its shape and type), what it reads, whether it may run in place, and
which device its weight pins it to. Every builder of `harness.plan.reserve_graph` (attention, latent attention,
delta-net, FFN) speaks in these."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.models.inspect import ModelInfo
from harness.plan.graph_alloc import Graph
from harness.plan.placement import CPU, Placement

F32 = 4
F16 = 2
I32 = 4
I64 = 8


class Weights:
    """A model's tensors by name: shape and device."""

    def __init__(self, placement: Placement, model: ModelInfo) -> None:
        self.shape = {t.name: t.shape for t in model.tensors}
        self.device = placement.tensor_devices

    def has(self, name: str) -> bool:
        return name in self.shape

    def rows(self, name: str) -> int:
        """The output width of a matrix (ggml ne[1])."""
        return self.shape[name][1]

    def dev(self, name: str) -> str | None:
        return self.device.get(name) if name in self.shape else None


@dataclass
class Builder:
    """One graph under construction: the graph, the weights, the micro-batch's tokens `T` and outputs."""

    g: Graph
    w: Weights
    T: int
    n_outputs: int
    inputs: dict[str, int] = field(default_factory=dict)   # graph inputs by name (positions, masks, ...)

    def op(self, n_bytes: int, *srcs: int, weight: str | None = None, inplace: bool = False,
           name: str = "") -> int:
        """A node of `n_bytes`; `weight`: the tensor whose device it runs on."""
        return self.g.add(n_bytes, *srcs, device=self.w.dev(weight) if weight else None, inplace=inplace,
                          name=name or (weight or ""))

    def view(self, src: int, name: str = "view") -> int:
        return self.g.view(src, name=name)

    def nbytes(self, node: int) -> int:
        return self.g.nodes[node].n_bytes

    def input(self, n_bytes: int, name: str) -> int:
        self.inputs[name] = self.g.input(n_bytes, CPU, name)
        return self.inputs[name]

    def norm(self, x: int, weight: str, n_elements: int | None = None) -> int:
        """rms_norm (in place where the input has no other reader), then the multiplication by its weight."""
        n = (n_elements if n_elements is not None else self.nbytes(x) // F32) * F32
        cur = self.g.add(n, x, inplace=True, name="norm")
        return self.op(n, cur, weight=weight, inplace=True) if self.w.has(weight) else cur

    def matmul(self, weight: str, x: int, n_tokens: int | None = None) -> int:
        """weight x: [rows, n_tokens] f32, plus the bias where the model has one (in place)."""
        T = self.T if n_tokens is None else n_tokens
        out = self.op(self.w.rows(weight) * T * F32, x, weight=weight)
        bias = weight.replace(".weight", ".bias")
        if self.w.has(bias):
            out = self.op(self.w.rows(weight) * T * F32, out, weight=bias, inplace=True)
        return out

    def unary(self, x: int, name: str) -> int:
        """An element-wise op on x (in place where x has no other reader)."""
        return self.g.add(self.nbytes(x), x, inplace=True, name=name)

    def binary(self, a: int, b: int, name: str, n_bytes: int | None = None) -> int:
        """add / mul / sub of two tensors: the shape of `a` (broadcast `b`), in place on `a` where possible."""
        return self.g.add(self.nbytes(a) if n_bytes is None else n_bytes, a, b, inplace=True, name=name)

    def cont(self, x: int, name: str = "cont", n_bytes: int | None = None) -> int:
        """ggml_cont (or cpy, concat, repeat...): a new tensor, never in place."""
        return self.g.add(self.nbytes(x) if n_bytes is None else n_bytes, x, name=name)
