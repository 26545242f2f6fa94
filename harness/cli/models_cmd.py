"""`moebench synth OUT.gguf --preset NAME [--seed S] [--split-max-tensors N | --split-max-mib M]`, `moebench synth --list`,
`moebench inspect MODEL.gguf [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    synth = sub.add_parser("synth", help="write a random-weight MoE GGUF with a preset's shapes")
    synth.add_argument("out", nargs="?", type=Path, help="the .gguf file to write")
    synth.add_argument("--preset", help="preset name (see --list)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same file (default 0)")
    synth.add_argument("--split-max-tensors", type=int, default=0, metavar="N",
                       help="write the model as shards of at most N tensors (OUT-00001-of-0000K.gguf, ...)")
    synth.add_argument("--split-max-mib", type=int, default=0, metavar="MIB",
                       help="write the model as shards of at most MIB MiB of tensor data each")
    synth.add_argument("--list", action="store_true", help="list the presets and exit")
    synth.set_defaults(func=cmd_synth)

    inspect = sub.add_parser("inspect", help="show a GGUF model's architecture and where its bytes are")
    inspect.add_argument("model", type=Path, help="a .gguf file (a split model: any of its shards)")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument("--tensors", action="store_true", help="with --json: include every tensor")
    inspect.set_defaults(func=cmd_inspect)


def cmd_synth(args: argparse.Namespace) -> int:
    from harness.models.preset_tensors import tensor_specs_bytes, preset_tensors
    from harness.models.presets import PRESETS, get_preset
    from harness.models.report import format_bytes
    from harness.models.shards import SplitRule, read_shards
    from harness.models.synth import write_synthetic_model

    if args.list:
        width = max(len(name) for name in PRESETS)
        for name, preset in PRESETS.items():
            size = format_bytes(tensor_specs_bytes(preset_tensors(preset)))
            print(f"{name.ljust(width)}  ~{size.rjust(9)}  {preset.description}")
        return 0
    if args.out is None or args.preset is None:
        raise UserError("synth needs OUT.gguf and --preset NAME (or --list)")
    preset = get_preset(args.preset)
    split = None
    if args.split_max_tensors or args.split_max_mib:
        if args.split_max_tensors < 0 or args.split_max_mib < 0:
            raise UserError("--split-max-tensors and --split-max-mib take a positive number")
        split = SplitRule(max_tensors=args.split_max_tensors, max_mib=args.split_max_mib)
    start = time.monotonic()
    show_progress = preset.full_size and sys.stderr.isatty()
    last_report = [0.0]

    def progress(done_bytes: int, total_bytes: int) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 1.0 or done_bytes == total_bytes:
            last_report[0] = now
            print(f"\rwriting {args.out}: {100 * done_bytes / total_bytes:5.1f}% of {format_bytes(total_bytes)}",
                  end="", file=sys.stderr, flush=True)

    try:
        path = write_synthetic_model(args.out, preset.name, seed=args.seed,
                                     progress=progress if show_progress else None, split=split)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    finally:
        if show_progress:
            print(file=sys.stderr)
    files = [f.path for f in read_shards(path)]
    size = sum(f.stat().st_size for f in files)
    elapsed_s = time.monotonic() - start
    shards = f"{len(files)} shards, " if len(files) > 1 else ""
    print(f"wrote {path} ({shards}{format_bytes(size)}, preset {preset.name}, seed {args.seed}) in {elapsed_s:.1f} s")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from harness.models.inspect import inspect_model
    from harness.models.report import render_model_info

    info = inspect_model(args.model)
    if args.json:
        print(json.dumps(info.to_dict(include_tensors=args.tensors), indent=2))
        return 0
    print(render_model_info(info))
    if info.tensors and not info.moe_layers:
        from strategies.registry import available_strategies

        strategies = available_strategies()
        still = [name for name, cls in strategies.items() if not getattr(cls, "needs_experts", False)]
        expert_only = [name for name in strategies if name not in still]
        print(f"\nno routed experts: a dense model. Strategies that still apply: {', '.join(still)} "
              f"(not {', '.join(expert_only)}: they place experts)")
    return 0
