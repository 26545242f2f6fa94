"""The compute buffers a graph needs on each device, the way ggml sizes them: ggml-backend's scheduler gives
every operation a device, copies what crosses devices, and ggml-alloc's graph allocator places every
intermediate tensor in its device's buffer, reusing memory as soon as the last reader of a tensor has run. The
buffer size each device reports (`compute buffer size = ... MiB`) is the high-water mark of that allocation.

What is modelled (read from mainline's `ggml/src/ggml-alloc.c` and `ggml-backend.cpp`; ik's ggml is the same):
- nodes in graph order; a node reading tensors, possibly in place (`ggml_op_can_inplace`: add, mul, scale,
  norms, rope, soft_max, unary ops) when it is its parent's only reader; views allocate nothing and keep their
  source alive;
- graph inputs (token ids, positions, the attention mask, ...) allocated first and kept while read; outputs
  (the logits) never freed;
- the scheduler's device of a node without weights: the device of the accelerator node before it, else after
  it, else of its neighbours (`ggml_backend_sched_split_graph`'s four expansion passes); a tensor read on another
  device is copied there once per device (ordinary nodes, placed at the start of the split that first needs
  them, freed after their last reader);
- ggml-alloc's dynamic allocator per device: sizes aligned (32 bytes), best fit among the free blocks, else
  the end of the buffer, freed blocks merged with their neighbours.

Not modelled: graph splits beyond the copies (pipeline-parallel copies: one GPU only here), backend-specific
allocation padding of activations (none for f32 tensors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGNMENT = 32   # ggml's TENSOR_ALIGNMENT: the CPU and RPC (CPU server) buffers' alignment


@dataclass
class Node:
    n_bytes: int
    srcs: tuple[int, ...] = ()
    device: str | None = None      # fixed: the device of its weights (or inputs: the CPU); None: the scheduler's
    inplace: bool = False          # may reuse its first parent's memory (ggml_op_can_inplace)
    view_of: int | None = None     # a view of another node: allocates nothing
    is_input: bool = False
    is_output: bool = False
    name: str = ""
    external: bool = False         # data held elsewhere (the KV cache): never allocated, copied when read across
    writes: bool = False           # a view that is an operation writing into its source (set_rows): its
                                   # sources on other devices are copied like an ordinary node's


@dataclass
class Graph:
    """A compute graph in build order; `add` returns the node's index, used as a source by later nodes."""

    nodes: list[Node] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)   # ggml_build_forward_expand calls, in order

    def expand(self, i: int) -> int:
        self.roots.append(i)
        return i

    def ordered(self) -> "Graph":
        """The graph in ggml's order: depth first from each expanded tensor in turn, sources left to right,
        every tensor after its sources (`ggml_visit_parents_graph`); what no expanded tensor reaches is
        dropped."""
        order: list[int] = []
        seen: set[int] = set()
        for root in self.roots or [len(self.nodes) - 1]:
            stack = [(root, 0)]
            while stack:
                i, k = stack.pop()
                if k == 0:
                    if i in seen:
                        continue
                    seen.add(i)
                srcs = self.nodes[i].srcs
                if k < len(srcs):
                    stack.append((i, k + 1))
                    if srcs[k] not in seen:
                        stack.append((srcs[k], 0))
                else:
                    order.append(i)
        index = {old: new for new, old in enumerate(order)}
        out = Graph()
        for old in order:
            n = self.nodes[old]
            out.nodes.append(Node(n.n_bytes, tuple(index[s] for s in n.srcs), n.device, n.inplace,
                                  index[n.view_of] if n.view_of is not None else None, n.is_input, n.is_output,
                                  n.name, n.external, n.writes))
        return out

    def add(self, n_bytes: int, *srcs: int, device: str | None = None, inplace: bool = False,
            name: str = "") -> int:
        self.nodes.append(Node(int(n_bytes), tuple(s for s in srcs if s is not None), device, inplace, name=name))
        return len(self.nodes) - 1

    def input(self, n_bytes: int, device: str, name: str = "") -> int:
        self.nodes.append(Node(int(n_bytes), (), device, is_input=True, name=name))
        return len(self.nodes) - 1

    def external(self, n_bytes: int, device: str, name: str = "") -> int:
        self.nodes.append(Node(int(n_bytes), (), device, name=name, external=True))
        return len(self.nodes) - 1

    def view(self, src: int, *, reads: tuple[int, ...] | None = None, name: str = "") -> int:
        """A view of `src` (reshape, permute; set_rows into `src`, reading `reads` in ggml's source order)."""
        root = src
        while self.nodes[root].view_of is not None:   # ggml: a view's view_src is the tensor that owns the data
            root = self.nodes[root].view_of
        self.nodes.append(Node(0, reads if reads is not None else (src,), None, view_of=root, name=name,
                               writes=reads is not None))
        return len(self.nodes) - 1


def assign_devices(graph: Graph, cpu: str) -> list[str]:
    """Every node's device: fixed ones as given; views where their source is; the rest by the scheduler's
    expansion: down then up from accelerator nodes, then down then up from any node; the CPU otherwise."""
    nodes = graph.nodes
    out: list[str | None] = [n.device for n in nodes]

    def expand(order, accelerators_only: bool) -> None:
        current = None
        for i in order:
            if nodes[i].view_of is not None or nodes[i].is_input or nodes[i].external:  # leaves: not in the
                continue                                                                 # scheduler's node list
            if out[i] is not None:
                current = None if accelerators_only and out[i] == cpu else out[i]
            elif current is not None:
                out[i] = current

    forward, backward = range(len(nodes)), range(len(nodes) - 1, -1, -1)
    expand(forward, True)
    expand(backward, True)
    expand(forward, False)
    expand(backward, False)
    for i, n in enumerate(nodes):
        if n.view_of is not None:
            root = n.view_of
            while nodes[root].view_of is not None:
                root = nodes[root].view_of
            out[i] = out[root] if out[root] is not None else cpu
        elif out[i] is None:
            out[i] = cpu
    return [d or cpu for d in out]


class _Allocator:
    """ggml_dyn_tallocr on one chunk: free blocks by offset, the last one the unbounded end."""

    def __init__(self) -> None:
        self.blocks: list[list[int]] = [[0, 1 << 62]]  # [offset, size]
        self.max_size = 0

    def alloc(self, size: int) -> int:
        size = -(-size // ALIGNMENT) * ALIGNMENT
        best = None
        for i, (_offset, free) in enumerate(self.blocks[:-1]):
            if free >= size and (best is None or free <= self.blocks[best][1]):
                best = i
        if best is None:
            best = len(self.blocks) - 1
        block = self.blocks[best]
        offset = block[0]
        block[0] += size
        block[1] -= size
        if block[1] == 0:
            del self.blocks[best]
        self.max_size = max(self.max_size, offset + size)
        return offset

    def free(self, offset: int, size: int) -> None:
        size = -(-size // ALIGNMENT) * ALIGNMENT
        for i, block in enumerate(self.blocks):
            if block[0] + block[1] == offset:          # after this block
                block[1] += size
                if i + 1 < len(self.blocks) and block[0] + block[1] == self.blocks[i + 1][0]:
                    block[1] += self.blocks[i + 1][1]
                    del self.blocks[i + 1]
                return
            if offset + size == block[0]:              # before this block
                block[0] -= size
                block[1] += size
                if i > 0 and self.blocks[i - 1][0] + self.blocks[i - 1][1] == block[0]:
                    self.blocks[i - 1][1] += block[1]
                    del self.blocks[i]
                return
        at = next((i for i, b in enumerate(self.blocks) if b[0] > offset), len(self.blocks))
        self.blocks.insert(at, [offset, size])


def with_copies(graph: Graph, devices: list[str]) -> tuple[Graph, list[str]]:
    """The graph as the scheduler runs it: its leaves (inputs, the KV cache) first, then its nodes cut into
    splits (runs of nodes on one device; views and leaves go along), a source read from another device replaced
    by a copy on the reader's device, one per tensor and device, added at the start of the split that first
    needs it (`ggml_backend_sched_split_graph`, one copy: no pipeline parallelism)."""
    nodes = graph.nodes
    out = Graph()
    out_devices: list[str] = []
    new_index: dict[int, int] = {}
    copies: dict[tuple[int, str], int] = {}

    def leaf(i: int) -> bool:
        return nodes[i].is_input or nodes[i].external

    def cache_view(s: int) -> bool:
        """A view of a leaf (the KV cache) whose sources are all there already."""
        root = nodes[s].view_of
        return root is not None and leaf(root) and all(r in new_index for r in nodes[s].srcs)

    def crossing(i: int, s: int) -> bool:
        return (nodes[i].view_of is None or nodes[i].writes) and devices[s] != devices[i]

    def emit(node: Node, device: str, srcs: tuple[int, ...], view_of: int | None) -> int:
        out.nodes.append(Node(node.n_bytes, srcs, device, node.inplace, view_of, node.is_input, node.is_output,
                              node.name, node.external, node.writes))
        out_devices.append(device)
        return len(out.nodes) - 1

    for i, node in enumerate(nodes):
        if leaf(i):
            new_index[i] = emit(node, devices[i], (), None)
    compute = [i for i in range(len(nodes)) if not leaf(i)]
    start = 0
    while start < len(compute):
        device = next((devices[i] for i in compute[start:] if nodes[i].view_of is None), devices[compute[start]])
        end = start
        while end < len(compute) and (nodes[compute[end]].view_of is not None or devices[compute[end]] == device):
            end += 1
        split = compute[start:end] if end > start else compute[start:start + 1]
        def copy(s: int, device: str) -> None:
            if (s, device) not in copies:
                size = nodes[s].n_bytes if nodes[s].view_of is None else nodes[nodes[s].view_of].n_bytes
                copies[s, device] = emit(Node(size, name=f"copy of {nodes[s].name}"), device, (new_index[s],), None)

        for j in split:   # what the split reads from before it (or a view of the cache): copied at its start
            for s in nodes[j].srcs:
                if crossing(j, s) and s not in new_index and cache_view(s):
                    new_index[s] = emit(nodes[s], devices[s], tuple(new_index[r] for r in nodes[s].srcs),
                                        new_index[nodes[s].view_of])
                if crossing(j, s) and s in new_index:
                    copy(s, devices[j])
        for j in split:
            if j in new_index:
                continue
            node = nodes[j]
            for s in node.srcs:   # a view inside the split of a tensor held elsewhere: copied where it is read
                if crossing(j, s):
                    copy(s, devices[j])
            srcs = tuple(copies[s, devices[j]] if crossing(j, s) else new_index[s] for s in node.srcs)
            new_index[j] = emit(node, devices[j], srcs,
                                new_index[node.view_of] if node.view_of is not None else None)
        start += len(split)
    return out, out_devices


def peak_bytes(graph: Graph, devices: list[str], trace: list | None = None) -> dict[str, int]:
    """The high-water mark of each device's compute buffer for one pass over the graph (ggml-alloc's order:
    inputs first, then every node; a parent freed once its last reader and views are done)."""
    nodes = graph.nodes
    children = [0] * len(nodes)
    views = [0] * len(nodes)
    for n in nodes:
        if n.view_of is not None:
            views[n.view_of] += 1
        for s in n.srcs:
            children[s] += 1
    allocators: dict[str, _Allocator] = {}
    where: dict[int, int] = {}       # node -> offset, for nodes that own memory

    def allocate(i: int) -> None:
        n = nodes[i]
        if i in where or n.view_of is not None or n.external or n.n_bytes <= 0 and not n.is_input:
            return
        if n.inplace and n.srcs:
            p = n.srcs[0]
            if nodes[p].view_of is not None:   # a reshaped parent: its source, when nothing else reads it
                root = nodes[p].view_of
                reusable = children[p] == 1 and views[p] == 0 and views[root] == 1 and children[root] == 0
                p = root
            else:
                reusable = children[p] == 1 and views[p] == 0
            if (reusable and p in where and not nodes[p].is_output and owned[p] >= n.n_bytes
                    and devices[p] == devices[i]):
                where[i], owned[i] = where.pop(p), owned.pop(p)
                return
        alloc = allocators.setdefault(devices[i], _Allocator())
        before = alloc.max_size
        where[i] = alloc.alloc(max(n.n_bytes, 1))
        owned[i] = n.n_bytes
        if trace is not None and alloc.max_size > before:  # what was live when this device's buffer grew
            trace.append((i, devices[i], alloc.max_size, [(j, where[j]) for j in where if devices[j] == devices[i]]))

    owned: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if n.is_input:
            allocate(i)
    for i, n in enumerate(nodes):
        allocate(i)
        for p in n.srcs:
            children[p] -= 1
            if children[p] or views[p]:
                continue
            target = p
            if nodes[p].view_of is not None:
                target = nodes[p].view_of
                views[target] -= 1
                if views[target] or children[target]:
                    continue
            if target in where and not nodes[target].is_output:
                allocators[devices[target]].free(where.pop(target), owned.pop(target))
    return {d: a.max_size for d, a in allocators.items()}
