"""`moebench report` (one sweep: report.md, table.csv, plots/, community.csv) and `moebench compare` (sweeps side
by side)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md, table.csv, plots/ and community.csv for a results folder",
                       description="Summarize a sweep: the best configuration (strategy, parameters and engine "
                                   "knobs) for pp / tg / balanced with 95%% confidence intervals, the top "
                                   "configurations, stability, plots (knob sweeps and heatmaps included), every "
                                   "configuration in table.csv and a shareable community.csv.")
    p.add_argument("folder", type=Path, help="results folder holding runs.csv (e.g. results/default)")
    p.add_argument("--out", type=Path, default=None, help="write here instead of into the results folder")
    p.add_argument("--no-plots", action="store_true", help="skip the plots (faster)")
    p.set_defaults(func=_report)

    post = sub.add_parser("post", help="a paste-ready markdown block for GitHub or Reddit: the box, the model, the "
                                       "winning command line, its gain over --fit and --cpu-moe with 95%% intervals",
                          description="Write post.md into a sweep's results folder or a `moebench tune` folder "
                                      "(tune.json) and print it.")
    post.add_argument("folder", type=Path, help="results/<sweep> (runs.csv) or a tune folder (tune.json)")
    post.add_argument("--tool", default=None, help="the tool whose winner to post (default: llama-server where "
                                                   "measured)")
    post.add_argument("--criterion", choices=("balanced", "pp", "tg"), default="balanced",
                      help="which winner of a sweep (default: balanced)")
    post.add_argument("--out", type=Path, default=None, help="write here instead of FOLDER/post.md")
    post.set_defaults(func=_post)

    c = sub.add_parser("compare", help="compare sweeps side by side (same configuration and test, ratios with "
                                       "95%% intervals; a regression gate)",
                       description="Tokens/s of the same configuration (model, engine, tool, strategy, parameters, "
                                   "placement) and test across results folders, and each later folder's ratio to "
                                   "the first with its 95%% interval: the delta method on the log ratio with "
                                   "Welch-Satterthwaite degrees of freedom, over one sample per process (two or "
                                   "more processes) or the repetitions of a single process.")
    c.add_argument("folders", type=Path, nargs="+", help="two or more results folders; the first is the baseline")
    c.add_argument("--out", type=Path, default=None, help="also write the comparison as markdown (.md) or CSV")
    c.add_argument("--fail-if-slower", type=float, default=None, metavar="PCT",
                   help="exit 1, listing them, when a ratio is below 1 - PCT/100 and its 95%% interval lies "
                        "entirely below 1 (slower beyond noise); exit 0 otherwise")
    c.set_defaults(func=_compare)


def _report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    result = write_report(args.folder, args.out, with_plots=not args.no_plots)
    best = result["best"]
    many = len(best) and (best["model"].nunique() > 1 or best["engine"].nunique() > 1)
    for _, row in best.iterrows():
        scope = f"{row['model']} {row['engine']} " if many else ""
        print(f"{scope}{row['tool']:<13} best for {row['criterion']:<8} {row['best']}  ({row['verdict']})")
    print(f"report: {result['report']}")
    print(f"table: {result['table_csv']}")
    print(f"community: {result['community']}")
    if result["plots"]:
        print(f"plots: {result['plots'][0].parent} ({len(result['plots'])})")
    return 0


def _post(args: argparse.Namespace) -> int:
    from harness.analysis.post import post_markdown

    text = post_markdown(args.folder, args.tool, args.criterion)
    out = args.out or args.folder / "post.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")
    print(f"\n(written to {out})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare, regressions, render_compare
    from harness.analysis.load import load_results
    from harness.errors import UserError

    if len(args.folders) < 2:
        raise UserError("compare needs at least two results folders")
    pct = args.fail_if_slower
    if pct is not None and not 0 <= pct < 100:
        raise UserError(f"--fail-if-slower takes a percentage from 0 to below 100, not {pct:g}")
    frame = compare(args.folders)
    df = load_results(args.folders)
    engines = {label: ", ".join(sorted(set(g["engine"]))) for label, g in df.groupby("sweep_label", sort=False)}
    text = render_compare(frame, engines)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".csv":
            frame.to_csv(args.out, index=False)
        else:
            args.out.write_text(text)
    if pct is None:
        return 0
    slower = regressions(frame, pct)
    if slower.empty:
        print(f"\nno row slower than {pct:g}% beyond noise")
        return 0
    print(f"\nslower than {pct:g}% beyond noise (ratio < {1 - pct / 100:.3f} and its 95% interval below 1): "
          f"{len(slower)}")
    for _, row in slower.iterrows():
        print(f"  {row['model']} | {row['engine']} | {row['tool']} | {row['config_key']} | {row['test']}: "
              f"{row['folder']}/{row['base']} = {row['ratio']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
    return 1
