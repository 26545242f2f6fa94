"""`moebench report` (one sweep: report.md, plots/, community.csv) and `moebench compare` (sweeps side by side)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md, plots/ and community.csv for a results folder",
                       description="Summarize a sweep: best placement for pp / tg / balanced with 95%% "
                                   "confidence intervals, the full table, plots and a shareable community.csv.")
    p.add_argument("folder", type=Path, help="results folder holding runs.csv (e.g. results/default)")
    p.add_argument("--out", type=Path, default=None, help="write here instead of into the results folder")
    p.add_argument("--no-plots", action="store_true", help="skip the plots (faster)")
    p.set_defaults(func=_report)

    c = sub.add_parser("compare", help="compare sweeps side by side (same placement and test, ratios)",
                       description="Tokens/s of the same (tool, placement, test) across results folders, with "
                                   "ratios to the first folder.")
    c.add_argument("folders", type=Path, nargs="+", help="two or more results folders")
    c.add_argument("--out", type=Path, default=None, help="also write the comparison as markdown (.md) or CSV")
    c.set_defaults(func=_compare)


def _report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    result = write_report(args.folder, args.out, with_plots=not args.no_plots)
    best = result["best"]
    for _, row in best.iterrows():
        print(f"{row['tool']:<13} best for {row['criterion']:<8} {row['best']}  ({row['verdict']})")
    print(f"report: {result['report']}")
    print(f"community: {result['community']}")
    if result["plots"]:
        print(f"plots: {result['plots'][0].parent} ({len(result['plots'])})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from harness.analysis.load import load_results
    from harness.analysis.report import compare, render_compare
    from harness.errors import UserError

    if len(args.folders) < 2:
        raise UserError("compare needs at least two results folders")
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
    return 0
