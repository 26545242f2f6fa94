"""report.md stays bounded however many configurations a sweep has: the best per criterion, the top N per tool
and headline test, the stability section, and a link to table.csv, which holds every configuration and test.
The folder is benchmarks/report_scale.py's synthetic one, small (600 rows, two tools); expected values are
computed here from runs.csv with the csv module and numpy. No timing is asserted (see the benchmark)."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot
import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from harness.analysis import plots
from harness.analysis.knobs import KNOBS
from harness.analysis.report import write_report
from harness.analysis.selection import BASELINES, CHART_N, TOP_N

ROWS, TOOLS = 600, ("llama-bench", "llama-server")


def _benchmark():
    spec = importlib.util.spec_from_file_location("report_scale", REPO / "benchmarks" / "report_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model):
    folder = _benchmark().write_synthetic(tmp_path_factory.mktemp("scale") / "scale", ROWS, processes=2,
                                          tools=TOOLS, model_file=str(tiny_model))
    return folder, write_report(folder)


def configuration_means(folder: Path) -> dict:
    """(tool, strategy, strategy_params, knobs..., test) -> mean of the processes' tps_mean, from runs.csv."""
    groups = defaultdict(list)
    with open(folder / "runs.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            ident = (row["tool"], row["strategy"], row["strategy_params"], *(row.get(k, "") for k in KNOBS),
                     row["test"])
            groups[ident].append(float(row["tps_mean"]))
    return {k: float(np.mean(v)) for k, v in groups.items()}


def section(text: str, heading: str) -> str:
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| engine |")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]


def test_rows_and_table_csv(report):
    folder, result = report
    with open(folder / "runs.csv", newline="") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == ROWS
    means = configuration_means(folder)
    table = pd.read_csv(folder / "table.csv", dtype={k: str for k in KNOBS}, keep_default_na=False)
    assert len(table) == len(means) == ROWS // 2  # two processes per configuration and test
    got = {(r["tool"], r["strategy"], r["strategy_params"], *(r.get(k, "") for k in KNOBS), r["test"]): r["tps_mean"]
           for _, r in table.iterrows()}
    assert got.keys() == means.keys()
    assert all(got[k] == pytest.approx(v, rel=1e-9) for k, v in means.items())


def test_report_shows_the_top_n_per_tool_and_test(report):
    folder, _ = report
    text = (folder / "report.md").read_text()
    top = section(text, "Top configurations")
    assert "[table.csv](table.csv)" in top and f"the {TOP_N} fastest of 75 configurations" in top
    rows = table_rows(top)
    assert len(rows) == TOP_N * len(TOOLS) * 2  # per tool, pp512 and tg128
    means = configuration_means(folder)
    for tool in TOOLS:
        for test in ("pp512", "tg128"):
            want = sorted((v for k, v in means.items() if k[0] == tool and k[-1] == test), reverse=True)[:TOP_N]
            shown = [r[6] for r in rows if r[1] == tool and r[2] == test]  # the tokens/s column
            assert shown == [f"{v:,.1f}" for v in want]
    # everything else stays small: best 3 per tool, the stability section, no per-configuration dump
    assert len(table_rows(section(text, "Best configuration"))) == 3 * len(TOOLS)
    assert "## Stability" in text and len(text) < 40_000
    assert "- **Configurations:** 150 measured ok" in text


def test_charts_show_the_top_and_the_baselines(report):
    folder, result = report
    fig = plots.plot_throughput(result["table"])
    panels = [ax for ax in fig.axes if ax.get_xticklabels()]
    assert len(panels) == len(TOOLS)
    means = configuration_means(folder)
    for ax, tool in zip(panels, sorted(TOOLS)):
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert CHART_N <= len(labels) <= CHART_N + len(BASELINES) + 2 and len(set(labels)) == len(labels)
        assert len(ax.patches) == 2 * len(labels)  # a pp and a tg bar each
        for baseline in BASELINES:
            assert any(label == baseline or label.startswith(baseline + " ") or label.startswith(baseline + "(")
                       for label in labels), baseline
        best_tg = max((v for k, v in means.items() if k[0] == tool and k[-1] == "tg128"))
        tg_bars = [p.get_height() for p in ax.patches[len(labels):]]
        assert max(tg_bars) == pytest.approx(best_tg)  # the fastest tg configuration is among them
    matplotlib.pyplot.close(fig)
    names = {p.stem for p in result["plots"]}
    assert {"throughput", "placement_map", "telemetry"} <= names
    telemetry = [n for n in names if n.startswith("telemetry")]
    assert 1 <= len(telemetry) <= 1 + len(BASELINES)
    text = (folder / "report.md").read_text()
    assert len(re.findall(r"!\[", text)) == len(result["plots"])


def test_many_failures_are_grouped_by_reason(tmp_path):
    folder = _benchmark().write_synthetic(tmp_path / "failing", 200, processes=2, telemetry=False)
    with open(folder / "runs.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    reasons = ("engine exited with code 1", "timed out after 120 s")
    for i, row in enumerate(rows[:90]):
        row.update(status="failed", reason=reasons[i % 2], tps_mean="", tps_samples="")
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    text = write_report(folder, with_plots=False)["report"].read_text()
    failed = section(text, "Failed and skipped")
    assert "90 rows, grouped by reason" in failed
    table = [line for line in failed.splitlines() if line.startswith("| llama-bench |")]
    assert len(table) == 2
    for reason in reasons:
        which = [r for r in rows[:90] if r["reason"] == reason]
        configs = {(r["strategy"], r["strategy_params"], *(r[k] for k in KNOBS)) for r in which}
        assert any(line.startswith(f"| llama-bench | failed | {reason} | {len(which)} | {len(configs)} |")
                   for line in table), reason
