"""`moebench post` (issue 20): the paste-ready block of a sweep (the golden schema-2 folder) and of a tune folder:
the box, the model, the engine, the winner's exact command line, the winner against --fit, --cpu-moe and all-gpu
with 95% intervals, the plot; a GitHub table whose rows all have the header's cells. No engine runs."""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from harness.analysis.load import load_results
from harness.analysis.post import post_markdown
from harness.analysis.stats import summarize
from harness.analysis.verdicts import best_strategies
from harness.intervals import ratio_interval

GOLDEN = Path(__file__).parent / "data" / "sweep-v2"


@pytest.fixture
def sweep(tmp_path) -> Path:
    folder = tmp_path / "sweep-v2"
    shutil.copytree(GOLDEN, folder, ignore=shutil.ignore_patterns("expected"))
    return folder


def _tables(text: str) -> list[list[str]]:
    """The markdown table lines of a text, each split into its cells (escaped pipes kept)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in rows]


def test_a_sweeps_post_has_the_winner_its_command_and_the_baselines(sweep):
    result = run_cli("post", sweep)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (sweep / "post.md").read_text()
    assert text in result.stdout
    df = load_results(sweep)
    table = summarize(df)
    win = best_strategies(table).query("tool == 'llama-server' and criterion == 'balanced'").iloc[0]
    assert f"- **Winner:** {win['best']}" in text
    assert "- **Hardware:** AMD EPYC (2 cores) · 23.5 GiB RAM · no GPU; accelerator: RPC0[127.0.0.1:56493]" in text
    assert "- **Model:** synth:tiny (qwen3moe, Q8_0, 15.6 MiB)" in text and "mainline-11434.0.0 (build 11434)" in text
    row = df[(df["config_key"] == win["best"]) & (df["tool"] == "llama-server") & df["ok"]].iloc[0]
    command = text.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert shlex.split(command) == json.loads(row["command"])  # the exact argument list the runner executed
    cells = _tables(text)
    assert len({len(r) for r in cells}) == 1 and len(cells) == 2 + 4  # header, rule, winner, 3 baselines
    by_name = {r[0]: r for r in cells[2:]}
    assert set(by_name) == {"winner", "`--fit`", "`--cpu-moe`", "all-gpu"}
    assert by_name["`--fit`"][1].startswith("not measured: skipped: predicted-oom (predicted 18 MiB")
    assert by_name["all-gpu"][1].startswith("not measured: skipped: predicted-oom")
    cpu = by_name["`--cpu-moe`"]
    assert cpu[1] == "cpu-moe ub=128"  # the best-scored cpu-moe configuration
    pp = table[(table["tool"] == "llama-server") & (table["test"] == "pp64")].set_index("config_key")
    a, b = pp.loc["cpu-moe ub=128"], pp.loc[win["best"]]
    ratio, low, high, _ = ratio_interval(a["tps_mean"], a["stdev"], a["n"], b["tps_mean"], b["stdev"], b["n"])
    assert cpu[4] == f"{ratio:.2f}× ({low:.2f}–{high:.2f})" and 0 < low < high
    assert "(plot: `moebench report" in text
    (sweep / "plots").mkdir()
    (sweep / "plots" / "throughput.png").write_bytes(b"png")
    assert "![throughput](plots/throughput.png)" in post_markdown(sweep)


def test_the_tool_and_criterion_can_be_chosen(sweep):
    text = post_markdown(sweep, "llama-bench", "tg")
    assert "- **Winner:** first-n-experts(n=2) ub=128" in text and "llama-bench -m" in text
    assert "-n 16" in text.split("```sh\n", 1)[1]  # the tg test's own process
    from harness.analysis.post import _table  # a baseline that wins says so

    df = load_results(sweep)
    group = summarize(df).query("tool == 'llama-bench'")
    rows = df[df["tool"] == "llama-bench"]
    lines = _table(rows, group, "cpu-moe ub=64", {"engine-fit": None, "cpu-moe": "cpu-moe ub=64", "all-gpu": None},
                   ["pp64", "tg16"])
    assert [r[0] for r in _tables("\n".join(lines))[2:]] == ["winner = `--cpu-moe`", "`--fit`", "all-gpu"]
    bad = run_cli("post", sweep, "--tool", "llama-sweep-bench")
    assert bad.returncode == 2 and "no balanced winner for llama-sweep-bench" in bad.stderr


def _tune_folder(tmp_path: Path) -> Path:
    """A tune folder as `moebench tune` leaves it: tune.json beside the rows of its results (the golden
    sweep's llama-server rows stand in for tune's measured points)."""
    folder = tmp_path / "tune"
    shutil.copytree(GOLDEN, folder, ignore=shutil.ignore_patterns("expected"))
    ids = {"first-n-experts(n=2)": "b55b388240122196", "cpu-moe": "eeab98e5bf7a17f8"}
    server = ["llama-server", "-m", "model.gguf", "--port", "SERVER_PORT", "-ot", "blk\\.[0-1]\\.ffn=CPU"]
    answer = {"objective": "tg", "depth": 0, "vram_budget_mib": 14.0, "engine": {"name": "mainline"},
              "tool": "llama-server", "device": "rpc-rig", "stopped_because": "the best's interval is above "
              "every unmeasured bound", "results": str(tmp_path / "elsewhere" / "tune"),
              "best": {"label": "first-n-experts(n=2)", "commands": {"llama-server": [server]}},
              "runs": [{"label": label, "config_id": cid} for label, cid in ids.items()],
              "baselines": {"engine-fit": None, "cpu-moe": "cpu-moe"}}
    (folder / "tune.json").write_text(json.dumps(answer))
    return folder


def test_a_tune_folders_post_has_tunes_answer(tmp_path):
    folder = _tune_folder(tmp_path)
    result = run_cli("post", folder)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (folder / "post.md").read_text()
    assert "moebench tune's answer for tg under 14 MiB of rpc-rig" in text
    assert "- **Winner:** first-n-experts(n=2) ub=64" in text
    assert "llama-server -m model.gguf --port SERVER_PORT -ot 'blk\\.[0-1]\\.ffn=CPU'" in text
    cells = {r[0]: r for r in _tables(text)[2:]}
    assert cells["`--cpu-moe`"][1] == "cpu-moe ub=64" and "×" in cells["`--cpu-moe`"][4]
    assert cells["`--fit`"][1].startswith("not measured: skipped: predicted-oom")
    assert "Stopped: the best's interval" in text
    assert not any(math.isnan(float(x)) for x in re.findall(r"\((\d+\.\d+)–", text))
