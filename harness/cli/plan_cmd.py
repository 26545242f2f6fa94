"""`moebench plan [bench.yaml]` and `moebench flags MODEL STRATEGY [name=value ...]`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.config import load_config
from harness.models.report import layer_ranges
from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import CPU
from harness.tools import TOOL_NAMES
from harness.units import MIB


def register(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="print the sweep's matrix: placements, exact command lines, memory, fits")
    plan.add_argument("config", nargs="?", type=Path, default=Path("bench.yaml"))
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=cmd_plan)

    flags = sub.add_parser("flags", help="the exact engine arguments for one placement, to paste elsewhere")
    flags.add_argument("model", type=Path, help="a GGUF file")
    flags.add_argument("strategy", help="a strategy name (see `moebench strategies`)")
    flags.add_argument("params", nargs="*", metavar="name=value", help="strategy parameters, e.g. n=4")
    flags.add_argument("--engine", default="mainline", help="mainline, ik, a cached engine id or a folder")
    flags.add_argument("--tool", default="llama-server", choices=TOOL_NAMES)
    flags.add_argument("--device", help="the accelerator(s) as the engine names them: CUDA0, CUDA0,CUDA1, "
                       "RPC0[127.0.0.1:50052]")
    flags.add_argument("--ctx", type=int, default=4096, help="context size for the KV cache prediction")
    flags.add_argument("--json", action="store_true", help="argument list and predicted bytes per device")
    flags.set_defaults(func=cmd_flags)

    strategies = sub.add_parser("strategies", help="list the registered strategies and their parameters")
    strategies.set_defaults(func=cmd_strategies)


def cmd_flags(args: argparse.Namespace) -> int:
    from harness.engines.discover import find_engine
    from harness.models import inspect_model
    from harness.plan.flags import compile_flags
    from harness.grid import parse_assignments
    from harness.plan.memory import MemorySettings, predict_memory
    from harness.plan.targets import resolve_target
    from harness.plan.verify import predicted_model_buffers
    from strategies.registry import get_strategy

    model = inspect_model(args.model)
    placement = get_strategy(args.strategy).placement(model, parse_assignments(args.params))
    engine = find_engine(args.engine)
    target = resolve_target(engine, args.tool, args.device.split(",") if args.device else None)
    compiled = compile_flags(placement, model, target)
    memory = predict_memory(placement, model, MemorySettings(n_ctx=args.ctx))
    device_names = {"cpu": "CPU", **{f"accel{i}": b for i, b in enumerate(target.buffer_types)}}
    if args.json:
        json.dump({
            "engine": engine.name, "dialect": engine.dialect, "tool": args.tool, "device": target.buffer_type,
            "devices": list(target.buffer_types),
            "strategy": placement.describe(), "args": compiled.args,
            "predicted_weights_bytes": {device_names.get(d, d): b for d, b in memory.weights_bytes.items()},
            "predicted_model_buffer_bytes": predicted_model_buffers(placement, model, target, compiled),
            "predicted_kv_bytes": {device_names.get(d, d): b for d, b in memory.kv_bytes.items()},
            "note": placement.note,
        }, sys.stdout, indent=2)
        print()
    else:
        print(shlex.join(compiled.args))
    return 0


def plan_rows(config) -> list[dict]:
    """`moebench plan --json`: each configuration as `moebench run` plans it, with the exact argument lists it
    runs (llama-bench: one per test; the RPC rig's port and llama-server's port as placeholders)."""
    from dataclasses import asdict

    from harness.plan.planner import plan_sweep, status
    from harness.runner.commands import commands

    rows = []
    for cid, conf in plan_sweep(config):
        rows.append({
            "config_id": cid, "model": conf.model.label, "model_file": str(conf.model.path),
            "engine": conf.engine.name, "dialect": conf.engine.dialect, "tool": conf.tool,
            "strategy": conf.strategy, "params": conf.params, "knobs": asdict(conf.knobs), "threads": conf.threads,
            "status": status(conf), "error": conf.error,
            "device": conf.target.buffer_type if conf.target else None, "devices": conf.device_names,
            "args": conf.flags.args if conf.flags else None, "knob_args": conf.knob_args,
            "engine_args": conf.engine_args, "commands": commands(conf, config.bench),
            "memory": conf.memory.to_dict() if conf.memory else None,
            "ram_expert_layers": _ram_expert_layers(conf),
            "predicted_model_buffers": conf.predicted_buffers})
    return rows


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.knobs import varying_knobs

    config = load_config(args.config)
    rows = plan_rows(config)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    knob_names = varying_knobs(config.bench)
    table = Table("model", "strategy", *(["knobs"] if knob_names else []), "engine", "tool", "VRAM MiB", "RAM MiB",
                  "fits", "model buffers MiB")
    table.add_column("commands", overflow="fold")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        memory = r["memory"]
        fits = {True: "yes", False: "NO", None: "?"}[memory["fits"]] if memory else "-"
        buffers = ", ".join(f"{d}: {b / MIB:.1f}" for d, b in (r["predicted_model_buffers"] or {}).items())
        knobs = [", ".join(f"{k}={r['knobs'][k]}" for k in knob_names)] if knob_names else []
        shown = (escape("\n".join(shlex.join(argv) for argv in r["commands"])) if r["commands"]
                 else f"[red]{escape(r['error'] or '')}")
        strategy = f"{r['strategy']}({params})" if params else str(r["strategy"] or "defaults")
        if r["ram_expert_layers"] is not None:  # dense or interleaved layers: what n counted
            strategy += f"\nexperts in RAM: layers {layer_ranges(r['ram_expert_layers']) if r['ram_expert_layers'] else 'none'}"
        table.add_row(r["model"], strategy,
                      *knobs, r["engine"], r["tool"], _vram_cell(memory, r["devices"]),
                      f"{memory['ram_mib']:.0f}" if memory else "-", _fits_cell(memory, fits), escape(buffers), shown)
    Console(width=240).print(table)
    print(f"{len(rows)} configurations; ports shown as RPC_PORT (the RPC rig's server) and SERVER_PORT "
          "(llama-server) are chosen when the run starts")
    return 0


def _ram_expert_layers(conf) -> list[int] | None:
    """The layers whose routed experts the placement holds in RAM, on a model whose layers do not all have
    experts (there a strategy's n counts the layers with experts, and -ncmoe N may say another number);
    None elsewhere or without a placement."""
    if conf.placement is None or conf.placement.deferred:
        return None
    info = conf.model.info
    if len(info.moe_layers) == info.n_layers - info.nextn_predict_layers:
        return None
    return sorted({t.layer for t in info.tensors if t.group is TensorGroup.ROUTED_EXPERTS and t.layer is not None
                   and conf.placement.tensor_devices.get(t.name) == CPU})


def _vram_cell(memory: dict | None, names: dict[str, str]) -> str:
    """The predicted VRAM; with several devices, each on its own line (MiB, of its budget where known)."""
    if not memory:
        return "-"
    lines = [f"{memory['vram_mib']:.0f}"]
    if len(memory["vram_mib_by_device"]) > 1:
        budgets = memory["budget_mib_by_device"]
        lines += [escape(f"{names.get(d, d)}: {mib:.0f}" + (f" of {budgets[d]:.0f}" if d in budgets else ""))
                  for d, mib in memory["vram_mib_by_device"].items()]
    return "\n".join(lines)


def _fits_cell(memory: dict | None, fits: str) -> str:
    if not memory or len(memory["vram_mib_by_device"]) < 2:
        return fits
    per = memory["fits_by_device"]
    return "\n".join([fits, *(("yes" if per[d] else "NO") if d in per else "?" for d in memory["vram_mib_by_device"])])


def cmd_strategies(args: argparse.Namespace) -> int:
    from strategies.registry import available_strategies

    for name, cls in available_strategies().items():
        params = ", ".join(f"{k}" + (f"={f.default!r}" if not f.is_required() else "")
                           for k, f in cls.Params.model_fields.items())
        print(f"{name:20s} {cls.summary}" + (f"  [{params}]" if params else ""))
    return 0
