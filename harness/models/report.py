"""Plain-text rendering of a ModelInfo: a header, totals by group and type, and a per-layer table."""

from __future__ import annotations

from harness.models.attention import describe
from harness.models.inspect import ModelInfo
from harness.models.tensor_groups import GROUP_NAMES


def format_bytes(n_bytes: int | float) -> str:
    """1536 -> '1.5 KiB'; binary units, three significant digits."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return [fmt(header), *(fmt(r) for r in rows)]


def layer_ranges(layers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3,5'."""
    runs: list[str] = []
    for i in layers:
        if runs and runs[-1].rsplit("-", 1)[-1] == str(i - 1):
            runs[-1] = f"{runs[-1].split('-')[0]}-{i}"
        else:
            runs.append(str(i))
    return ",".join(runs) or "none"


def _mtp_share(info: ModelInfo) -> str:
    mtp_bytes = sum(layer.total_bytes for layer in info.layers if layer.is_mtp)
    return f"; {format_bytes(mtp_bytes)} in the MTP layer, which the engines skip" if mtp_bytes else ""


def render_model_info(info: ModelInfo, per_layer: bool = True) -> str:
    total = info.tensor_bytes_total or 1
    lines: list[str] = []
    if info.path:
        files = f"in {len(info.files)} files" if len(info.files) > 1 else "file"
        size = f"{format_bytes(info.file_size_bytes or 0)} {files}, " if info.file_size_bytes is not None else ""
        lines.append(f"model         {info.path} ({size}{len(info.tensors)} tensors)")
    if info.name:
        lines.append(f"name          {info.name}")
    if not info.tensors:
        lines += [f"architecture  {info.architecture}",
                  "weights       none: this file holds no tensors (a vocabulary-only GGUF, as llama.cpp's "
                  "models/ggml-vocab-*.gguf); there is nothing to place"]
        return "\n".join(lines)
    n_moe = len(info.moe_layers)
    mtp = f", {info.nextn_predict_layers} MTP" if info.nextn_predict_layers else ""
    lines += [
        f"architecture  {info.architecture}",
        f"layers        {info.n_layers} ({info.n_leading_dense_layers} leading dense, {n_moe} with experts{mtp})",
        f"experts       {info.n_experts} routed, {info.n_experts_used} used per token, {info.n_shared_experts} shared",
        f"expert layers {layer_ranges(info.moe_layers)} (a strategy's n counts these: n=1 is layer "
        f"{info.moe_layers[0] if info.moe_layers else '-'})",
        f"attention     {describe(info.attention)}",
        f"n_embd        {info.n_embd}    context {info.context_length}    vocab {info.vocab_size}",
        f"weights       {format_bytes(info.tensor_bytes_total)} ({info.tensor_bytes_total} bytes){_mtp_share(info)}",
        f"active/token  {format_bytes(info.active_bytes_per_token)} ({100 * info.active_bytes_per_token / total:.1f}%)",
        "",
    ]
    lines += _table(["type", "bytes", "share"],
                    [[t, format_bytes(b), f"{100 * b / total:.1f}%"] for t, b in info.quant_bytes.items()])
    lines.append("")
    lines += _table(["group", "bytes", "share"],
                    [[g, format_bytes(b), f"{100 * b / total:.1f}%"] for g, b in info.bytes_by_group.items() if b])
    if per_layer and info.layers:
        groups = [g for g in GROUP_NAMES if any(layer.bytes_by_group[g] for layer in info.layers)]
        rows = []
        for layer in info.layers:
            label = f"{layer.index}{' (mtp)' if layer.is_mtp else ''}"
            rows.append([label, *(format_bytes(layer.bytes_by_group[g]) if layer.bytes_by_group[g] else "-"
                                  for g in groups), format_bytes(layer.total_bytes)])
        lines.append("")
        lines += _table(["layer", *groups, "total"], rows)
    return "\n".join(lines)
