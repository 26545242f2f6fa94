"""`moebench post`: a short, paste-ready markdown block for a GitHub discussion or a Reddit post, from a sweep's
results folder or a `moebench tune` folder (issue 20). report.md is the full evidence; the post is ten lines:

- the box (the host fingerprint the rows carry, `report.hardware_line`), the model, the engine build;
- the winner and its exact command line: a sweep's the row's own `command` (the argument list the runner
  executed), a tune folder's the llama-server line of tune.json (ports as placeholders);
- a small table of the winner against `--fit` (engine-fit), `--cpu-moe` and all-gpu when they were measured
  (why not, when not: "skipped: predicted-oom"), the pp and tg headline tests' tokens/s with their 95%
  intervals, and the winner's speed-up over each with the interval of the ratio;
- the plot (plots/throughput.png, drawn by `moebench report`).

One definition of everything: the table is `stats.summarize`'s, the sweep's winner `verdicts.best_strategies`'
(the tune folder's: tune's own answer), the baselines `selection`'s best of each baseline strategy, the ratios
`intervals.ratio_interval` and "beyond noise" `intervals.noise_verdict` (the 95% intervals do not overlap).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd

from harness.analysis.load import load_meta, load_results
from harness.analysis.markdown import fmt
from harness.analysis.report import hardware_line
from harness.analysis.selection import SCOPE, scores
from harness.analysis.stats import headline_test, summarize
from harness.analysis.verdicts import best_strategies
from harness.errors import UserError
from harness.intervals import noise_verdict, ratio_interval
from harness.units import MIB

BASELINE_NAMES = {"engine-fit": "`--fit`", "cpu-moe": "`--cpu-moe`", "all-gpu": "all-gpu"}
PLOT = Path("plots") / "throughput.png"
PREFERRED_TOOL = "llama-server"  # what people serve with


def post_markdown(folder: str | Path, tool: str | None = None, criterion: str = "balanced") -> str:
    """The post for a results folder (runs.csv) or a tune folder (tune.json)."""
    folder = Path(folder)
    if (folder / "tune.json").is_file():
        return tune_post(folder)
    if not (folder / "runs.csv").is_file():
        raise UserError(f"{folder}: neither runs.csv (a sweep) nor tune.json (a tune folder) is there")
    return sweep_post(folder, tool, criterion)


def sweep_post(folder: Path, tool: str | None = None, criterion: str = "balanced") -> str:
    """One block per (model, engine) of the sweep, for `tool` (default llama-server where measured) and the
    `best_strategies` winner of `criterion` (pp, tg or balanced)."""
    df, table = _frames(folder)
    tool = tool or (PREFERRED_TOOL if (table["tool"] == PREFERRED_TOOL).any() else str(table["tool"].iat[0]))
    best = best_strategies(table)
    best = best[(best["tool"] == tool) & (best["criterion"] == criterion)]
    if best.empty:
        raise UserError(f"{folder}: no {criterion} winner for {tool} (tools measured: "
                        f"{', '.join(sorted(set(table['tool'])))})")
    name = (load_meta(folder).get("config") or {}).get("name") or folder.name
    blocks = []
    for _, win in best.iterrows():
        scope = dict(zip(SCOPE, (win[c] for c in SCOPE)))
        group = _scoped(table, scope)
        ranked = scores(group)
        baselines = {s: _best_of(ranked, s) for s in BASELINE_NAMES}
        rows = _scoped(df, scope)
        command = _row_command(rows, win["best"], headline_test(group, "pp" if criterion == "pp" else "tg"))
        heading = f"### {win['model']}: the fastest placement on my box ({tool}, {criterion}, moebench sweep {name})"
        blocks.append(_block(heading, rows, group, win["best"], baselines, command, folder))
    return "\n\n".join(blocks) + "\n"


def tune_post(folder: Path) -> str:
    """The block of a `moebench tune` folder: tune's answer (tune.json) with its results folder's intervals."""
    answer = json.loads((folder / "tune.json").read_text())
    best = answer.get("best")
    if not best:
        raise UserError(f"{folder / 'tune.json'}: tune measured nothing successfully; nothing to post")
    results = _tune_results(folder, answer)
    df, table = _frames(results)
    ids = {r["label"]: r["config_id"] for r in answer.get("runs", [])}

    def key(label):
        found = df.loc[df["config_id"] == ids.get(label), "config_key"] if label in ids else []
        return str(found.iat[0]) if len(found) else None

    winner = key(best["label"])
    if winner is None:
        raise UserError(f"{results}: the rows of tune's best ({best['label']}) are not there")
    rows = df[df["config_key"] == winner].iloc[0]
    scope = {c: rows[c] for c in SCOPE}
    group = _scoped(table, scope)
    baselines = {s: key(answer.get("baselines", {}).get(s)) for s in BASELINE_NAMES}
    server = (best.get("commands") or {}).get("llama-server")
    command = shlex.join(server[0]) if isinstance(server, list) and server else None
    device = answer.get("device")
    heading = (f"### {scope['model']}: moebench tune's answer for {answer.get('objective')} under "
               f"{answer.get('vram_budget_mib'):g} MiB of {device}")
    return _block(heading, _scoped(df, scope), group, winner, baselines, command, results,
                  note=f"Stopped: {answer.get('stopped_because')}.") + "\n"


def _frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = load_results(folder)
    table = summarize(df)
    if table.empty:
        raise UserError(f"{folder}: no successful measurement; nothing to post")
    return df, table


def _scoped(frame: pd.DataFrame, scope: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for col, value in scope.items():
        mask &= frame[col] == value
    return frame[mask]


def _best_of(ranked: pd.DataFrame, strategy: str) -> str | None:
    rows = ranked[ranked["strategy"] == strategy]
    return str(rows.index[0]) if len(rows) else None


def _tune_results(folder: Path, answer: dict) -> Path:
    """tune's results folder: where tune.json says, else beside it under the same name, else the folder."""
    named = Path(str(answer.get("results") or ""))
    for candidate in (named, folder / named.name, folder):
        if str(candidate) and (candidate / "runs.csv").is_file():
            return candidate
    raise UserError(f"{folder}: tune's results folder ({named}) with its runs.csv is not there")


def _row_command(rows: pd.DataFrame, key: str, test: str | None) -> str | None:
    """The exact argument list the runner executed for configuration `key` (its `test`'s row), as a shell line."""
    mine = rows[(rows["config_key"] == key) & rows["ok"]]
    if test is not None and (mine["test"] == test).any():
        mine = mine[mine["test"] == test]
    cell = mine["command"].dropna().iat[0] if "command" in mine and mine["command"].notna().any() else None
    if cell is None:
        return None
    argv = cell if isinstance(cell, list) else json.loads(cell) if str(cell).startswith("[") else None
    return shlex.join(str(a) for a in argv) if argv else str(cell)


def _block(heading: str, rows: pd.DataFrame, group: pd.DataFrame, winner: str, baselines: dict, command,
           folder: Path, note: str = "") -> str:
    first = rows.iloc[0]
    size = first.get("model_size_bytes")
    size_txt = f", {float(size) / MIB / 1024:,.1f} GiB" if pd.notna(size) and float(size) >= 1024 * MIB \
        else (f", {float(size) / MIB:,.1f} MiB" if pd.notna(size) else "")
    build = first.get("engine_build")
    commit = first.get("engine_commit")
    engine = f"{first['engine']} (build {fmt(build)}" + (f", commit {commit}" if pd.notna(commit) else "") + ")"
    tests = [t for t in (headline_test(group, "pp"), headline_test(group, "tg")) if t]
    lines = [heading, "", f"- **Hardware:** {hardware_line(rows)}",
             f"- **Model:** {first['model']} ({first.get('model_arch')}, {first.get('model_quant')}{size_txt})",
             f"- **Engine:** {engine}", f"- **Winner:** {winner}", ""]
    if command:
        lines += ["```sh", command, "```", ""]
    lines += _table(rows, group, winner, baselines, tests) + [""]
    processes = int(group["processes"].max())
    lines.append(f"{processes} fresh processes per configuration; 95% Student-t intervals over the processes' "
                 "means; a ratio in **bold** is beyond noise (the two 95% intervals do not overlap). " + note)
    plot = folder / PLOT
    lines += ["", f"![throughput]({PLOT.as_posix()})" if plot.is_file() else
              f"(plot: `moebench report {folder}` draws {PLOT.as_posix()})",
              "", "<sub>measured with moebench: the full evidence is report.md and runs.csv</sub>"]
    return "\n".join(line.rstrip() for line in lines)


def _table(rows: pd.DataFrame, group: pd.DataFrame, winner: str, baselines: dict, tests: list[str]) -> list[str]:
    head = ["", "configuration", *(f"{t} t/s (95% CI)" for t in tests), *(f"winner × ({t})" for t in tests)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    stats = {t: group[group["test"] == t].set_index("config_key") for t in tests}
    itself = [BASELINE_NAMES[s] for s, key in baselines.items() if key == winner]
    entries = [("winner" + (f" = {itself[0]}" if itself else ""), winner)]
    entries += [(BASELINE_NAMES[s], key) for s, key in baselines.items() if key != winner]
    for name, key in entries:
        if key is None or all(key not in stats[t].index for t in tests):
            strategy = next(s for s, n in BASELINE_NAMES.items() if n == name)
            lines.append(f"| {name} | {_why_not(rows, strategy)} |" + " |" * (2 * len(tests)))
            continue
        cells = [_tps(stats[t], key) for t in tests] + [_ratio(stats[t], winner, key) for t in tests]
        lines.append("| " + " | ".join([name, key.replace("|", "\\|"), *cells]) + " |")
    return lines


def _tps(stat: pd.DataFrame, key: str) -> str:
    if key not in stat.index:
        return "–"
    r = stat.loc[key]
    ci = "" if r["ci_low"] != r["ci_low"] else f" ({fmt(float(r['ci_low']))}–{fmt(float(r['ci_high']))})"
    return f"{fmt(float(r['tps_mean']))}{ci}"


def _ratio(stat: pd.DataFrame, winner: str, key: str) -> str:
    """The winner's tokens/s over the baseline's with its 95% interval (`ratio_interval`), bold when beyond
    noise (`noise_verdict`); "–" for the winner itself."""
    if key == winner or key not in stat.index or winner not in stat.index:
        return "–"
    a, b = stat.loc[key], stat.loc[winner]
    ratio, low, high, _ = ratio_interval(a["tps_mean"], a["stdev"], a["n"], b["tps_mean"], b["stdev"], b["n"])
    text = f"{ratio:.2f}×" + ("" if low != low else f" ({low:.2f}–{high:.2f})")
    beyond = noise_verdict(b["ci_low"], b["ci_high"], a["ci_low"], a["ci_high"]) in ("a", "b")
    return f"**{text}**" if beyond else text


def _why_not(rows: pd.DataFrame, strategy: str) -> str:
    """Why a baseline has no measurement: its rows' status and reason, or that the sweep did not include it."""
    mine = rows[rows["strategy"] == strategy]
    if mine.empty:
        return "not in this sweep"
    first = mine.iloc[0]
    reason = str(first.get("reason") or "").splitlines()[0][:90] if pd.notna(first.get("reason")) else ""
    return f"not measured: {first['status']}" + (f" ({reason})" if reason else "")

