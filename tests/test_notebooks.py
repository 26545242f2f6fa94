"""The notebooks in notebooks/, executed with nbclient against the results of a real sweep of the tiny model
(llama-bench, RPC rig on loopback, three strategies, two repetitions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import REPO, run_cli

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.engine

NOTEBOOKS = REPO / "notebooks"
BENCH = """\
name: nb
models: [{synth: tiny}]
engines: [mainline]
tools: [llama-bench]
rpc_rig: true
strategies:
  - all-gpu
  - cpu-moe
  - name: first-n-experts
    params: {n: [2, 4]}
bench: {prompt_tokens: [64], gen_tokens: [16], repetitions: 2, processes: 1, ctx: 512}
timeouts: {run_s: 120}
"""


@pytest.fixture(scope="module")
def sweep(mainline_engine, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nb-sweep")
    (root / "bench.yaml").write_text(BENCH)
    result = run_cli("run", root / "bench.yaml", "--out", root / "out")
    assert result.returncode == 0, result.stderr
    folder = root / "out" / "nb"
    assert (folder / "runs.csv").exists()
    return folder


def execute(name: str, results: Path) -> tuple[str, int]:
    """Run a notebook; (all text output, number of PNG outputs)."""
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} is committed with outputs"
    old = os.environ.get("MOEBENCH_RESULTS")
    os.environ["MOEBENCH_RESULTS"] = str(results)  # the kernel inherits the environment
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        if old is None:
            os.environ.pop("MOEBENCH_RESULTS", None)
        else:
            os.environ["MOEBENCH_RESULTS"] = old
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/markdown", ""))
            images += "image/png" in data
    return "\n".join(text), images


@pytest.fixture(scope="module")
def expected(sweep):
    from harness.analysis import best_strategies, load_results, summarize

    df = load_results(sweep)
    best = best_strategies(summarize(df)).set_index("criterion")
    return df, best


def test_compare_strategies(sweep, expected):
    df, best = expected
    text, images = execute("compare_strategies", sweep)
    assert f"{len(df)} rows, {int(df['ok'].sum())} ok, 4 placements" in text
    for criterion in ("pp", "tg", "balanced"):
        assert f"llama-bench: best for {criterion}: {best.loc[criterion, 'best']}" in text
    assert images >= 4  # throughput, parameter sweep, VRAM, traffic (and placement maps)


def test_compare_engines(sweep, expected):
    _, best = expected
    text, images = execute("compare_engines", f"{sweep}{os.pathsep}{sweep}")
    assert "folders: " in text and "engines: mainline-" in text
    assert f"best for tg: {best.loc['tg', 'best']}" in text
    assert "/" in text and "1.00" in text  # the ratio column of a folder against itself
    assert images >= 1


def test_telemetry(sweep, expected):
    df, _ = expected
    text, images = execute("telemetry", sweep)
    fastest_tg = df[df["kind"] == "tg"].sort_values("tps_mean", ascending=False).iloc[0]
    assert f"config {fastest_tg['config_id']}: {fastest_tg['placement']}" in text
    assert "samples over" in text and "rss_mib" in text
    assert images == 1
