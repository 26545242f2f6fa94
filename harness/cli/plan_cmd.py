"""`moebench plan [bench.yaml]` and `moebench flags MODEL STRATEGY [name=value ...]`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.config import load_config
from harness.errors import UserError
from harness.grid import parse_assignments
from harness.knobs import varying_knobs
from harness.models.report import layer_ranges
from harness.models.tensor_groups import TensorGroup
from harness.plan.placement import CPU
from harness.plan.planner import plan, status
from harness.plan.request import bench_settings, point_request, request_from_config
from harness.runner.commands import commands
from harness.tools import TOOL_NAMES
from harness.units import MIB
from strategies.registry import available_strategies


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
    flags.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                       help="an engine knob (ubatch=2048, cache_type_k=q8_0, ...): its arguments are printed too, "
                            "and the memory predicted with it")
    flags.add_argument("--json", action="store_true", help="argument list and predicted bytes per device")
    flags.set_defaults(func=cmd_flags)

    strategies = sub.add_parser("strategies", help="list the registered strategies and their parameters")
    strategies.set_defaults(func=cmd_strategies)


def cmd_flags(args: argparse.Namespace) -> int:
    """One placement planned by the planner (knob values applied): its placement arguments, and with knobs the
    knob arguments `moebench run` would pass with them."""
    knobs = parse_assignments(args.knob)
    # every tool sizes its KV cache at --ctx: llama-bench from its test, the others from ctx
    bench = bench_settings(prompt_tokens=[args.ctx], gen_tokens=[0], ctx=args.ctx, **knobs)
    request = point_request({"path": str(args.model.resolve())}, {"name": args.engine}, args.strategy,
                            parse_assignments(args.params), tool=args.tool, rpc_rig=False, device=None, bench=bench)
    request = replace(request, devices=args.device.split(",") if args.device else [])
    planned = plan(request)
    if len(planned) != 1:
        raise UserError(f"{len(planned)} placements: give one value per parameter and knob")
    conf = planned[0]
    if conf.error:
        raise UserError(conf.error.removeprefix("cannot place: "))
    args_out = conf.placement_args + (conf.knob_args if knobs else [])
    if args.json:
        memory = conf.memory
        names = {"cpu": "CPU", **conf.device_names}
        json.dump({
            "engine": conf.engine.name, "dialect": conf.engine.dialect, "tool": conf.tool,
            "device": conf.target.buffer_type, "devices": list(conf.target.buffer_types),
            "strategy": conf.placement.describe(), "args": conf.placement_args, "knob_args": conf.knob_args,
            "knobs": {k: v for k, v in asdict(conf.knobs).items() if k in knobs},
            "predicted_weights_bytes": {names.get(d, d): b for d, b in memory.weights_bytes.items()},
            "predicted_model_buffer_bytes": conf.predicted_buffers,
            "predicted_kv_bytes": memory.kv_by_engine_device(conf.engine_device_names),
            "predicted_compute_bytes": memory.compute_by_engine_device(conf.engine_device_names),
            "predicted_vram_bytes_by_device": {names.get(d, d): b for d, b in memory.vram_bytes_by_device.items()},
            "note": conf.placement.note,
        }, sys.stdout, indent=2)
        print()
    else:
        print(shlex.join(args_out))
    return 0


def plan_rows(config) -> list[dict]:
    """`moebench plan --json`: each configuration as `moebench run` plans it, with the exact argument lists it
    runs (llama-bench: one per test; the RPC rig's port and llama-server's port as placeholders)."""
    rows = []
    for conf in plan(request_from_config(config)):
        rows.append({
            "config_id": conf.id, "model": conf.model.label, "model_file": str(conf.model.path),
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
    config = load_config(args.config)
    rows = plan_rows(config)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    knob_names = varying_knobs(config.bench)
    table = Table("model", "strategy", *(["knobs"] if knob_names else []), "engine", "tool", "VRAM MiB", "RAM MiB",
                  "fits", "MiB per device: model + KV + compute", "model buffers MiB")
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
                      f"{memory['ram_mib']:.0f}" if memory else "-", _fits_cell(memory, fits),
                      _parts_cell(memory, r["devices"]), escape(buffers), shown)
    Console(width=240).print(table)
    print(f"{len(rows)} configurations; ports shown as RPC_PORT (the RPC rig's server) and SERVER_PORT "
          "(llama-server) are chosen when the run starts")
    from harness.perf.eta import estimate_sweep  # issue 20: how long `moebench run` will take
    print(estimate_sweep(config).describe())
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


def parts_lines(memory: dict | None, names: dict[str, str]) -> list[str]:
    """Each device's three predicted parts, `CPU: 12.3 + 4.0 + 1.5` (model + KV or recurrent state + compute,
    MiB), under the engine's device names."""
    if not memory:
        return []
    parts = (memory["weights_mib"], memory["kv_mib"], memory["compute_mib"])
    devices = sorted(set().union(*parts), key=lambda d: (d != "cpu", d))
    return [f"{names.get(d, 'CPU' if d == 'cpu' else d)}: " + " + ".join(f"{p.get(d, 0):.1f}" for p in parts)
            for d in devices]


def _parts_cell(memory: dict | None, names: dict[str, str]) -> str:
    return escape("\n".join(parts_lines(memory, names))) or "-"


def _fits_cell(memory: dict | None, fits: str) -> str:
    if not memory or len(memory["vram_mib_by_device"]) < 2:
        return fits
    per = memory["fits_by_device"]
    return "\n".join([fits, *(("yes" if per[d] else "NO") if d in per else "?" for d in memory["vram_mib_by_device"])])


def cmd_strategies(args: argparse.Namespace) -> int:
    for name, cls in available_strategies().items():
        params = ", ".join(f"{k}" + (f"={f.default!r}" if not f.is_required() else "")
                           for k, f in cls.Params.model_fields.items())
        print(f"{name:20s} {cls.summary}" + (f"  [{params}]" if params else ""))
    return 0
