"""`moebench tune MODEL [--engine E] [--device D | --rpc-rig] [--vram-budget-mib N] [--ctx N] ...`: the fastest
placement under a VRAM budget at the context it will be served with, in a handful of runs (`harness.tune`). The
device and the budget are found when not given (`harness.tune.where`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.cli.perf_cmd import add_box_arguments
from harness.errors import UserError
from harness.tune.settings import DEFAULT_SERVE_CTX
from harness.tune.space import DEFAULT_SPACE
from harness.tune.where import FIT_MARGIN_MIB


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser("tune", help="find the fastest placement under a VRAM budget with few measured runs")
    tune.add_argument("model", help="a GGUF file, or synth:PRESET")
    tune.add_argument("--engine", default="mainline", help="engine name or build folder (default: mainline)")
    where = tune.add_mutually_exclusive_group()
    where.add_argument("--device", help="the accelerator as the engine names it (CUDA0; default: the first the "
                                        "engine lists, else the RPC rig)")
    where.add_argument("--rpc-rig", action="store_true", help="the engine's own RPC server on loopback")
    tune.add_argument("--vram-budget-mib", type=float, help="memory the placement may use on the accelerator, MiB "
                                                            f"(default: its free memory less --fit's "
                                                            f"{FIT_MARGIN_MIB} MiB margin)")
    tune.add_argument("--ctx", type=int, default=DEFAULT_SERVE_CTX,
                      help=f"the context you serve with, per slot (llama-server -c; default {DEFAULT_SERVE_CTX}): "
                           "its KV cache and compute buffers count in the budget")
    tune.add_argument("--parallel", type=int, default=1, help="llama-server -np: request slots, each --ctx tokens")
    tune.add_argument("--cache-type-k", help="KV cache type of K (-ctk: f16, q8_0, q4_0, ...)")
    tune.add_argument("--cache-type-v", help="KV cache type of V (-ctv)")
    tune.add_argument("--objective", choices=["tg", "pp", "balanced"], default="tg")
    tune.add_argument("--depth", type=int, default=0, help="tokens already in the context (llama-bench -d)")
    tune.add_argument("--space", default=",".join(DEFAULT_SPACE),
                      help=f"strategy families to search, comma-separated (default: {','.join(DEFAULT_SPACE)})")
    tune.add_argument("--knob", action="append", default=[], metavar="NAME=V1,V2",
                      help="an engine knob and its values to search (ubatch=256,512)")
    tune.add_argument("--max-runs", type=int, default=12, help="configurations measured at most, baselines included")
    tune.add_argument("--processes", type=int, default=3, help="fresh processes per measured configuration")
    tune.add_argument("--dry-run", action="store_true",
                      help="no engine run, no calibration: rank the space on a box described by --hardware or "
                           "--gpu/--ram/--cores with the prior constants and print the recommended command line")
    add_box_arguments(tune)
    tune.add_argument("--json", action="store_true", help="--dry-run: print the answer as JSON")
    tune.add_argument("--out", type=Path, default=Path("results") / "tune", help="where the rows, tune.json and "
                                                                                 "tune.md go (default results/tune)")
    tune.set_defaults(func=cmd_tune)


def _knobs(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise UserError(f"--knob {item!r}: write NAME=V1,V2 (e.g. ubatch=256,512)")
        parsed = [int(v) if v.lstrip("-").isdigit() else {"on": True, "off": False}.get(v, v)
                  for v in values.split(",")]
        out[name] = parsed if len(parsed) > 1 else parsed[0]
    return out


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.cli.perf_cmd import engine_spec
    from harness.cli.run_cmd import RichProgress
    from harness.engines.discover import find_engine_entry
    from harness.perf.predict_one import model_spec
    from harness.tune.answer import write_answer
    from harness.tune.search import Tuner
    from harness.tune.settings import TuneSettings

    from harness.tune.where import default_budget_mib, find_where

    console = Console(stderr=True)
    if args.ctx < 1 or args.parallel < 1:
        raise UserError("--ctx and --parallel: expected positive numbers")
    if (args.hardware or args.gpu) and not args.dry_run:
        raise UserError("a described box (--hardware, --gpu) is tuned only with --dry-run: nothing can be "
                        "measured on a box this machine is not")
    engine = engine_spec(args.engine)
    engine["dialect"] = find_engine_entry(engine).dialect
    space = tuple(name.strip() for name in args.space.split(",") if name.strip())
    knobs = _knobs(args.knob)
    for name in ("cache_type_k", "cache_type_v"):
        if getattr(args, name):
            knobs[name] = getattr(args, name)
    if args.dry_run:
        return _dry_run(args, engine, space, knobs)
    where = find_where(engine, rpc_rig=args.rpc_rig, device=args.device)
    budget = args.vram_budget_mib
    said = where.said
    if budget is None:
        budget = default_budget_mib(where)
        said += f"; budget {budget:.0f} MiB = {where.free_mib:.0f} MiB free less --fit's {FIT_MARGIN_MIB} MiB margin"
    console.print(f"tuning on {said}; served at -c {args.ctx * args.parallel}"
                  + (f" -np {args.parallel}" if args.parallel > 1 else ""))
    settings = TuneSettings(model_spec(args.model), engine, where.rpc_rig, where.device, budget,
                            args.objective, args.depth, space, knobs, args.max_runs, args.processes,
                            args.out.parent, args.out.name, ctx=args.ctx, parallel=args.parallel, where_said=said)
    progress = RichProgress(console)
    try:
        tuner = Tuner(settings, report=lambda line: console.print(line), progress=progress)
        state = tuner.run()
    finally:
        progress.close()
    answer = write_answer(tuner, state, args.out)
    best = answer["best"]
    out = Console()
    if best is None:
        out.print(f"nothing was measured successfully; rows in {answer['results']}")
        return 1
    out.print(f"best for {args.objective}: {best['label']}  ({state.stopped_because})")
    for name, gain in best["gain_over"].items():
        if gain:
            out.print(f"  vs {name}: {gain['ratio']:.2f}x ({gain['verdict']})")
    out.print(f"{args.out / 'tune.md'}, {args.out / 'tune.json'}; rows in {answer['results']}")
    return 0


def _dry_run(args: argparse.Namespace, engine: dict, space: tuple[str, ...], knobs: dict) -> int:
    import json
    import shlex

    from rich.markup import escape

    from harness.cli.perf_cmd import described_box
    from harness.perf.predict_one import model_spec
    from harness.tune.dry_run import DESCRIBED_DEVICE, described_budget_mib, dry_run
    from harness.tune.settings import TuneSettings

    if args.rpc_rig or args.device:
        raise UserError("--dry-run tunes the described box's one GPU; leave out --rpc-rig and --device")
    profile = described_box(args)
    knobs = {"threads": profile.cores, **knobs}   # the described box's cores, not this machine's
    budget = args.vram_budget_mib if args.vram_budget_mib is not None else described_budget_mib(profile)
    settings = TuneSettings(model_spec(args.model), engine, False, DESCRIBED_DEVICE, budget, args.objective,
                            args.depth, space, knobs, args.max_runs, args.processes, args.out.parent,
                            args.out.name, ctx=args.ctx, parallel=args.parallel)
    answer = dry_run(settings, profile)
    if args.json:
        print(json.dumps(answer, indent=1, default=str))
        return 0
    out = Console()
    out.print(f"{answer['described']}; budget {budget:.0f} MiB at {answer['serving']}; "
              f"{answer['points']['fit']} of {answer['points']['planned']} points fit")
    out.print(f"constants: {answer['constants']}")
    for i, r in enumerate(answer["ranking"], 1):
        out.print(f"{i:2d}. {escape(r['label'])}: pp {r['predicted']['pp']:.1f}, tg {r['predicted']['tg']:.2f} tokens/s"
                  + (f", {r['served_vram_mib']:.0f} MiB served" if r["served_vram_mib"] else ""))
    best = answer["best"]
    command = best["llama_server"]
    out.print(f"best for {args.objective} (predicted, not measured): {escape(best['label'])}")
    gain = best["gain_over_cpu_moe"]
    if gain:
        out.print(f"  vs {escape(gain['baseline'])}: {gain['ratio']['tg']:.2f}x tg, {gain['ratio']['pp']:.2f}x pp "
                  "(predicted)")
    else:
        out.print("  vs cpu-moe: it does not fit the budget served")
    out.print(escape(shlex.join(command) if isinstance(command, list) else f"no command: {command}"),
              soft_wrap=True)
    return 0
