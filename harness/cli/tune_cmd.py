"""`moebench tune MODEL --engine E (--device D | --rpc-rig) --vram-budget-mib N ...`: the fastest placement under a
VRAM budget in a handful of runs (`harness.tune`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.errors import UserError
from harness.tune.space import DEFAULT_SPACE


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser("tune", help="find the fastest placement under a VRAM budget with few measured runs")
    tune.add_argument("model", help="a GGUF file, or synth:PRESET")
    tune.add_argument("--engine", default="mainline", help="engine name or build folder (default: mainline)")
    where = tune.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", help="the accelerator as the engine names it (CUDA0)")
    where.add_argument("--rpc-rig", action="store_true", help="the engine's own RPC server on loopback")
    tune.add_argument("--vram-budget-mib", type=float, required=True, help="memory the placement may use on the "
                                                                          "accelerator (MiB)")
    tune.add_argument("--objective", choices=["tg", "pp", "balanced"], default="tg")
    tune.add_argument("--depth", type=int, default=0, help="tokens already in the context (llama-bench -d)")
    tune.add_argument("--space", default=",".join(DEFAULT_SPACE),
                      help=f"strategy families to search, comma-separated (default: {','.join(DEFAULT_SPACE)})")
    tune.add_argument("--knob", action="append", default=[], metavar="NAME=V1,V2",
                      help="an engine knob and its values to search (ubatch=256,512)")
    tune.add_argument("--max-runs", type=int, default=12, help="configurations measured at most, baselines included")
    tune.add_argument("--processes", type=int, default=3, help="fresh processes per measured configuration")
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

    console = Console(stderr=True)
    engine = engine_spec(args.engine)
    engine["dialect"] = find_engine_entry(engine).dialect
    space = tuple(name.strip() for name in args.space.split(",") if name.strip())
    settings = TuneSettings(model_spec(args.model), engine, args.rpc_rig, args.device, args.vram_budget_mib,
                            args.objective, args.depth, space, _knobs(args.knob), args.max_runs, args.processes,
                            args.out.parent, args.out.name)
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
