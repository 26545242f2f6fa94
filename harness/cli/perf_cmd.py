"""`moebench calibrate`, `moebench predict` and `moebench explain`: the performance model (`harness.perf`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser("calibrate", help="measure the performance model's constants on this machine")
    _engine_device(cal)
    cal.add_argument("--tool", action="append", choices=["llama-bench", "llama-server"],
                     help="tools to calibrate (default: llama-bench and llama-server; ik on the RPC rig: the "
                          "server only, its llama-bench cannot place weights there)")
    cal.add_argument("--processes", type=int, default=3, help="fresh processes per configuration (default 3)")
    cal.add_argument("--quick", action="store_true", help="one sweep of five placements: a coarse calibration in "
                                                          "a quarter of the time (no filled-cache runs)")
    cal.add_argument("--json", action="store_true", help="print the calibration as JSON")
    cal.set_defaults(func=cmd_calibrate)

    pred = sub.add_parser("predict", help="predicted pp and tg tokens/s of a placement, with its roofline")
    pred.add_argument("model", help="a GGUF file, or synth:PRESET")
    pred.add_argument("strategy")
    pred.add_argument("params", nargs="*", metavar="name=value", help="strategy parameters")
    _engine_device(pred)
    pred.add_argument("--tool", default="llama-bench", choices=["llama-bench", "llama-server"])
    pred.add_argument("--prompt-tokens", type=int, default=512)
    pred.add_argument("--gen-tokens", type=int, default=128)
    pred.add_argument("--depth", type=int, default=0)
    pred.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE", help="an engine knob (ubatch=...)")
    pred.add_argument("--json", action="store_true")
    add_box_arguments(pred)
    pred.set_defaults(func=cmd_predict)

    exp = sub.add_parser("explain", help="predicted against measured per placement, and why placements differ")
    exp.add_argument("results", type=Path, help="a results folder (results/<sweep>)")
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(func=cmd_explain)


def add_box_arguments(parser: argparse.ArgumentParser) -> None:
    """--hardware / --gpu --ram --cores: a box described instead of this one (predict, tune --dry-run)."""
    box = parser.add_argument_group("a box described instead of this one (issue 21: the prior constants, no "
                                    "calibration, one GPU)")
    box.add_argument("--hardware", type=Path, metavar="PROFILE.yaml", help="a hardware profile file (gpu, ram, "
                                                                           "cores)")
    box.add_argument("--gpu", help='a card by name ("RTX 4090")')
    box.add_argument("--ram", help="the host's RAM: ddr5-6000x2 (type-MT/s x channels) or a bandwidth (70GB/s)")
    box.add_argument("--cores", type=int, help="the host's CPU cores")


def described_box(args: argparse.Namespace):
    """The hardware profile of --hardware, or of --gpu, --ram and --cores together."""
    from harness.hardware.profile import load_profile, profile_from_args

    if args.hardware:
        if args.gpu or args.ram or args.cores:
            raise UserError("give --hardware PROFILE or --gpu/--ram/--cores, not both")
        return load_profile(args.hardware)
    if not (args.gpu and args.ram and args.cores):
        raise UserError('a described box needs all of --gpu, --ram and --cores (e.g. --gpu "RTX 4090" --ram '
                        "ddr5-6000x2 --cores 16), or --hardware PROFILE.yaml")
    return profile_from_args(args.gpu, args.ram, args.cores)


def _engine_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", default="mainline", help="engine name (mainline, ik, a cached id) or a build "
                                                             "folder (default: mainline)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--device", help="the accelerator as the engine names it (CUDA0); default: the first")
    where.add_argument("--rpc-rig", action="store_true", help="the engine's own RPC server on loopback")


def engine_spec(text: str) -> dict:
    """The bench.yaml engine entry of a command line's --engine: a name, or a build folder."""
    path = Path(text).expanduser()
    if path.is_dir():  # a build folder: named after it (the folder above a `bin`)
        path = path.resolve()
        return {"name": path.parent.name if path.name == "bin" else path.name, "path": str(path)}
    return {"name": text}


def cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.cli.run_cmd import RichProgress
    from harness.engines.discover import find_engine_entry
    from harness.tune.calibrate import calibrate

    console = Console(stderr=True)
    spec = engine_spec(args.engine)
    tools = args.tool
    if not tools:
        engine = find_engine_entry(spec)
        rig_ik = args.rpc_rig and engine.dialect == "ik"
        tools = ["llama-server"] if rig_ik else ["llama-bench", "llama-server"]
    progress = RichProgress(console)
    try:
        cal = calibrate(spec, rpc_rig=args.rpc_rig, device=args.device, tools=tools, processes=args.processes,
                        progress=progress, quick=args.quick)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(cal.to_dict(), indent=1))
        return 0
    out = Console()
    out.print(f"calibration of {cal.engine} on {cal.device} ({', '.join(cal.tools)})")
    if cal.peaks:
        out.print(f"peaks: CPU {cal.peaks.cpu_bytes_s / 1e9:.1f} GB/s, accelerator {cal.peaks.accel_bytes_s / 1e9:.1f} "
                  f"GB/s, bus {cal.peaks.bus_bytes_s / 1e9:.2f} GB/s")
    for tool, found in cal.tools.items():
        errors = ", ".join(f"{k} {v:.1f}%" for k, v in found.median_abs_error_pct.items())
        out.print(f"{tool} ({found.threads} threads): median fit error {errors}")
        for kind, constants in (("tg", found.constants.tg), ("pp", found.constants.pp)):
            out.print(f"  {kind}: " + ", ".join(f"{k} {v:.3g}" for k, v in constants.items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from harness.perf.predict_one import predict_placement

    if args.hardware or args.gpu or args.ram or args.cores:
        return _predict_described(args)
    result = predict_placement(args.model, args.strategy, args.params, engine=engine_spec(args.engine),
                               rpc_rig=args.rpc_rig, device=args.device, tool=args.tool,
                               prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, depth=args.depth,
                               knobs=args.knob)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    out = Console()
    out.print(f"{result['placement']}  {result['engine']} {result['tool']} on {result['device']}")
    out.print(f"graph splits {result['graph_splits']}; calibration: {result['calibration'] or 'none (run moebench calibrate)'}")
    table = Table("test", "predicted tokens/s", "roofline tokens/s", "where the time goes")
    for test in result["tests"]:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in test["shares"].items() if v >= 0.01)
        table.add_row(test["test"], _fmt(test["predicted_tps"]), _fmt(test["roofline_tps"]), shares or "-")
    out.print(table)
    return 0


def _predict_described(args: argparse.Namespace) -> int:
    from harness.config import ModelSpec
    from harness.grid import parse_assignments
    from harness.perf.described import first_vs_last, predict_on_profile
    from harness.perf.priors import PRIOR_FIT
    from harness.perf.predict_one import model_spec
    from harness.plan.planner import resolve_model
    from strategies.registry import get_strategy

    profile = described_box(args)
    info = resolve_model(ModelSpec(**model_spec(args.model)), write=False).info  # a preset's plan: nothing written
    strategy = get_strategy(args.strategy)
    placement = strategy.place(info, strategy.Params(**parse_assignments(args.params)))
    knobs = parse_assignments(args.knob)
    unknown = set(knobs) - {"ubatch", "op_offload", "cache_type_k", "cache_type_v", "mmap"}
    if unknown:
        raise UserError(f"--knob {', '.join(sorted(unknown))}: a described box takes ubatch, op_offload, "
                        "cache_type_k, cache_type_v and mmap")
    dialect = "ik" if args.engine.startswith("ik") else "mainline"
    settings = {"dialect": dialect, "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
                "depth": args.depth, "ubatch": int(knobs.get("ubatch", 512)),
                "op_offload": knobs.get("op_offload", True) not in (False, "off", 0),
                "cache_type_k": knobs.get("cache_type_k", "f16"), "cache_type_v": knobs.get("cache_type_v", "f16"),
                "mmap": knobs.get("mmap", True) not in (False, "off", 0, "false")}   # off: pinned host weights
    tests = predict_on_profile(info, placement, profile, **settings)
    mirror = None
    if args.strategy in ("first-n-experts", "last-n-experts"):   # which term makes last-N beat first-N, or a tie
        n = strategy.Params(**parse_assignments(args.params)).n
        first, last = (get_strategy(name) for name in ("first-n-experts", "last-n-experts"))
        mirror = first_vs_last(info, first.place(info, first.Params(n=n)), last.place(info, last.Params(n=n)),
                               profile, **settings)
    result = {"placement": placement.describe(), "engine": dialect, "hardware": profile.to_dict(),
              "constants": "prior (harness.perf.priors.PRIOR, "
              + (f"fitted on the published tables, {PRIOR_FIT['date']}" if PRIOR_FIT else "the stated guess")
              + "; moebench calibrate on the box replaces them)",
              "tests": tests, "first_vs_last": mirror}
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    out = Console()
    out.print(f"{result['placement']}  {dialect} on {profile.describe()}")
    out.print(f"constants: {result['constants']}")
    table = Table("test", "predicted tokens/s", "roofline tokens/s", "where the time goes")
    for test in tests:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in test["shares"].items() if v >= 0.01)
        table.add_row(test["test"], _fmt(test["predicted_tps"]), _fmt(test["roofline_tps"]), shares or "-")
    out.print(table)
    for kind, v in (mirror or {}).items():
        why = (f"{v['term']} ({v['term_s_saved_by_last'] * 1e3:+.2f} ms saved by last-N)" if v["term"] else
               "a tie: no term differs (" + (
                   "a prompt's uploads wait for the router ids read-back, so they add up wherever the RAM-held "
                   "layers are: docs/ENGINE_FLAGS.md section 9)" if kind == "pp" else
                   "the same bytes read on each device, the same crossings per token)"))
        out.print(f"{kind}: last-N / first-N = {v['last_over_first']:.3f}; {why}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from harness.analysis.explain import explain_folder, explain_markdown

    if not (args.results / "runs.csv").is_file():
        raise UserError(f"{args.results} holds no runs.csv; give a results folder such as results/default")
    explained = explain_folder(args.results)
    if args.json:
        print(explained.to_json())
    else:
        print(explain_markdown(explained))
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:,.1f}"
