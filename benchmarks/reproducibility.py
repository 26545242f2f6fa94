"""Do two runs of the same sweep say the same thing? Runs a sweep (default: the repository's bench.yaml) twice
into two fresh folders, back to back, and prints for prompt processing and for generation, per tool:

- the verdicts each run makes on every pair of configurations (A faster beyond noise, B faster, or a tie),
  by the rule the report uses (`harness.analysis`: 95% intervals that do not overlap);
- how many of the verdicts either run makes the other confirms, and how many it contradicts;
- the share of pairs that both runs resolve (both say A or both say B... or one says the opposite);
- the rank correlation (Spearman) of the configurations' means between the runs;
- the median run-to-run difference of a configuration's mean, and the time per sweep.

Goals on the 2-core development machine: 0 contradicted, >= 95% confirmed, >= 50% of the tg pairs resolved by
both runs, median difference <= 3%, a sweep <= 5 minutes.

    .venv/bin/python benchmarks/reproducibility.py [bench.yaml] [--keep DIR]
    .venv/bin/python benchmarks/reproducibility.py --folders results/a/default results/b/default

Run it alone: anything else on the machine is noise in both runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy import stats

from harness.analysis.load import load_results
from harness.analysis.stats import headline_test, summarize
from harness.analysis.verdicts import pairwise_verdicts

REPO = Path(__file__).resolve().parent.parent
KEYS = ["model", "engine", "tool", "test"]


def run_twice(config: Path, keep: Path) -> tuple[list[Path], list[float]]:
    import yaml

    name = yaml.safe_load(config.read_text()).get("name", "default")
    folders, times = [], []
    for run in ("run1", "run2"):
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "harness.cli", "run", str(config), "--out", str(keep / run)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.monotonic() - started)
        folders.append(keep / run / name)
    return folders, times


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each tool's headline pp and tg tests (what the report ranks)."""
    keep = []
    for _, group in table.groupby(["engine", "tool", "model"]):
        for kind in ("pp", "tg"):
            test = headline_test(group, kind)
            if test:
                keep.append(group[group["test"] == test])
    return pd.concat(keep) if keep else table.iloc[0:0]


def compare_runs(folders: list[Path]) -> list[dict]:
    tables = [headline(summarize(load_results(f))) for f in folders]
    verdicts = [pairwise_verdicts(t).set_index([*KEYS, "a", "b"])["verdict"] for t in tables]
    out = []
    for kind in ("pp", "tg"):
        for (engine, tool), _ in tables[0][tables[0]["kind"] == kind].groupby(["engine", "tool"]):
            v1, v2 = (v[(v.index.get_level_values("engine") == engine) & (v.index.get_level_values("tool") == tool)
                        & v.index.get_level_values("test").str.startswith(kind)] for v in verdicts)
            both = v1.index.intersection(v2.index)
            a, b = v1.loc[both], v2.loc[both]
            made = [(x, y) for x, y in zip(a, b) if x in ("a", "b")] + [(y, x) for x, y in zip(a, b) if y in ("a", "b")]
            confirmed = sum(1 for x, y in made if x == y)
            contradicted = sum(1 for x, y in made if {x, y} == {"a", "b"})
            resolved = sum(1 for x, y in zip(a, b) if x in ("a", "b") and y in ("a", "b"))
            m1, m2 = (t[(t["engine"] == engine) & (t["tool"] == tool) & (t["kind"] == kind)]
                      .set_index(["model", "test", "config_key"])["tps_mean"] for t in tables)
            common = m1.index.intersection(m2.index)
            diffs = [abs(m1[k] - m2[k]) / ((m1[k] + m2[k]) / 2) * 100 for k in common]
            rho = stats.spearmanr(m1[common], m2[common]).statistic if len(common) > 2 else float("nan")
            out.append({"kind": kind, "tool": tool, "engine": engine, "pairs": len(both),
                        "verdicts_run1": int((a.isin(["a", "b"])).sum()), "verdicts_run2": int((b.isin(["a", "b"])).sum()),
                        "confirmed": confirmed, "made": len(made), "contradicted": contradicted,
                        "resolved_by_both": resolved, "spearman": rho,
                        "median_diff_pct": statistics.median(diffs) if diffs else float("nan")})
    return out


def print_report(rows: list[dict], times: list[float] | None) -> None:
    print(f"{'kind':4s} {'tool':13s} {'pairs':>5s} {'verdicts 1/2':>12s} {'confirmed':>10s} {'contradicted':>12s} "
          f"{'both resolve':>12s} {'spearman':>8s} {'median diff':>11s}")
    for r in rows:
        confirmed = f"{r['confirmed']}/{r['made']}" if r["made"] else "-"
        share = f" ({r['confirmed'] / r['made']:.0%})" if r["made"] else ""
        print(f"{r['kind']:4s} {r['tool']:13s} {r['pairs']:5d} {r['verdicts_run1']:5d}/{r['verdicts_run2']:<6d} "
              f"{confirmed + share:>10s} {r['contradicted']:12d} "
              f"{r['resolved_by_both']:5d} ({r['resolved_by_both'] / max(r['pairs'], 1):4.0%}) "
              f"{r['spearman']:8.2f} {r['median_diff_pct']:10.1f}%")
    for kind in ("pp", "tg"):
        sel = [r for r in rows if r["kind"] == kind]
        made, conf = sum(r["made"] for r in sel), sum(r["confirmed"] for r in sel)
        pairs, both = sum(r["pairs"] for r in sel), sum(r["resolved_by_both"] for r in sel)
        contra = sum(r["contradicted"] for r in sel)
        diffs = [r["median_diff_pct"] for r in sel]
        print(f"{kind}: {conf}/{made} verdicts confirmed ({conf / max(made, 1):.0%}), {contra} contradicted, "
              f"{both}/{pairs} pairs resolved by both ({both / max(pairs, 1):.0%}), median difference "
              f"{statistics.median(diffs) if diffs else float('nan'):.1f}%")
    if times:
        print("time per sweep: " + ", ".join(f"{t:.0f} s" for t in times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", type=Path, default=REPO / "bench.yaml")
    parser.add_argument("--keep", type=Path, help="run into this folder and keep the results")
    parser.add_argument("--folders", type=Path, nargs=2, help="compare two existing results folders instead")
    args = parser.parse_args()
    if args.folders:
        print_report(compare_runs(list(args.folders)), None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        folders, times = run_twice(args.config, keep)
        print(f"runs: {folders[0]} and {folders[1]}")
        print_report(compare_runs(folders), times)


if __name__ == "__main__":
    main()
