"""Engine knobs as sweep axes in the analysis: knob values are part of a configuration's identity (never pooled,
named in `config_key` when they vary, keyed in `compare`), the best combination names them, and the knob plots
and heatmaps show the values measured. Expected numbers come from `SPEC` with numpy, not from the code under
test."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from harness.analysis import best_strategies, compare, load_results, summarize
from harness.analysis import plots
from harness.analysis.knobs import KNOBS, knob_value
from harness.results.record import COLUMNS

GOLDEN = Path(__file__).parent / "data" / "sweep-tiny"
NS, UBATCH, FLASH = (2, 4), ("", "2048"), ("", "true")  # "true": how a boolean knob may be written
TESTS = ("pp64", "tg16")
SPREAD = (0.99, 1.0, 1.01)  # the three processes' means, relative to the configuration's mean


def expected_mean(n: int, ub: str, fa: str, test: str, factor: float = 1.0) -> float:
    """The configuration's mean tokens/s (each process's mean is this times SPREAD)."""
    if test == "pp64":
        value = 100 * (1.5 if ub else 1.0) * (1.1 if fa else 1.0) - 10 * n
    else:
        value = 50 - 5 * n + (1 if fa else 0) + (0.5 if ub else 0)
    return value * factor


def write_knob_sweep(folder: Path, factor_2048: float = 1.0) -> Path:
    """first-n-experts n ∈ NS × ubatch × flash_attn, load_mode fixed at mlock, 3 processes of 3 repetitions;
    the ubatch=2048 configurations' speeds times `factor_2048`."""
    folder.mkdir(parents=True)
    fields = list(COLUMNS) + [k for k in KNOBS if k not in COLUMNS]
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="", lineterminator="\n")
        writer.writeheader()
        for n, ub, fa, test in itertools.product(NS, UBATCH, FLASH, TESTS):
            mean = expected_mean(n, ub, fa, test, factor_2048 if ub else 1.0)
            for index, rel in enumerate(SPREAD):
                m = mean * rel
                writer.writerow({
                    "schema_version": 2, "run_id": f"{n}{ub}{fa}{test}{index}", "config_id": f"{n}-{ub}-{fa}",
                    "process_index": index, "sweep": "knobs", "status": "ok", "tool": "llama-bench",
                    "strategy": "first-n-experts", "strategy_params": json.dumps({"n": n}),
                    "placement": f"first-n-experts(n={n})", "test": test, "engine": "mainline", "model": "synth:a",
                    "tps_mean": m, "tps_samples": json.dumps([m - 0.1, m, m + 0.1]), "ubatch": ub, "flash_attn": fa,
                    "load_mode": "mlock"})
    return folder


def key(n: int, ub: str, fa: str) -> str:
    return f"first-n-experts(n={n})" + (f" ub={ub}" if ub else "") + (" fa=on" if fa else "")


@pytest.fixture()
def sweep(tmp_path) -> Path:
    return write_knob_sweep(tmp_path / "before")


@pytest.fixture()
def table(sweep) -> pd.DataFrame:
    return summarize(load_results(sweep))


def test_knob_values_are_normalized():
    assert knob_value(2048.0, "ubatch") == "2048" and knob_value("2048", "ubatch") == "2048"
    assert knob_value(float("nan"), "ubatch") == "" and knob_value(None) == "" and knob_value("") == ""
    assert knob_value("True", "flash_attn") == "on" and knob_value(0.0, "op_offload") == "off"
    assert knob_value("auto", "flash_attn") == "auto" and knob_value("q8_0", "cache_type_k") == "q8_0"


def test_load_names_the_varying_knobs_only(sweep):
    df = load_results(sweep)
    assert set(df["ubatch"]) == {"", "2048"}  # read as floats by pandas (2048.0), normalized
    assert set(df["flash_attn"]) == {"", "on"} and set(df["load_mode"]) == {"mlock"}
    assert set(df["config_key"]) == {key(n, ub, fa) for n, ub, fa in itertools.product(NS, UBATCH, FLASH)}
    assert (df["threads"] == "").all() and (df["cache_type_v"] == "").all()
    # the fixed load_mode is in `knobs` (every non-default knob), not in the name
    row = df[(df["ubatch"] == "2048") & (df["flash_attn"] == "on")].iloc[0]
    assert row["knobs"] == "ub=2048 fa=on load=mlock"


def test_older_folders_read_knobs_as_defaults():
    df = load_results(GOLDEN)  # written before the knob columns but threads (2 everywhere)
    for knob in KNOBS:
        assert (df[knob] == ("2" if knob == "threads" else "")).all(), knob
    assert (df["config_key"] == df["placement"]).all() and (df["knobs"] == "t=2").all()  # fixed: not in the name
    assert plots.sweep_axes(summarize(df)) == ["param"]


def test_two_knob_values_are_never_pooled(table):
    assert len(table) == len(NS) * len(UBATCH) * len(FLASH) * len(TESTS)
    for n, ub, fa, test in itertools.product(NS, UBATCH, FLASH, TESTS):
        rows = table[(table["config_key"] == key(n, ub, fa)) & (table["test"] == test)]
        assert len(rows) == 1
        means = np.array(SPREAD) * expected_mean(n, ub, fa, test)
        assert rows["tps_mean"].iat[0] == pytest.approx(means.mean())
        assert rows["n"].iat[0] == 3 and rows["unit"].iat[0] == "processes"
        assert rows["stdev"].iat[0] == pytest.approx(means.std(ddof=1))


def test_best_names_the_knobs(table):
    best = best_strategies(table).set_index("criterion")
    combos = list(itertools.product(NS, UBATCH, FLASH))
    for criterion, test in (("pp", "pp64"), ("tg", "tg16")):
        want = max(combos, key=lambda c: expected_mean(*c, test))
        assert best.loc[criterion, "best"] == key(*want)
        assert best.loc[criterion, "knobs"] == (f"ub={want[1]} " if want[1] else "") + \
            ("fa=on " if want[2] else "") + "load=mlock"
    pp_top = max(expected_mean(*c, "pp64") for c in combos)
    tg_top = max(expected_mean(*c, "tg16") for c in combos)
    balanced = max(combos, key=lambda c: math.sqrt(expected_mean(*c, "pp64") / pp_top
                                                   * expected_mean(*c, "tg16") / tg_top))
    assert best.loc["balanced", "best"] == key(*balanced)


def test_compare_keys_by_knob(sweep, tmp_path):
    after = write_knob_sweep(tmp_path / "after", factor_2048=0.8)
    frame = compare([sweep, after])
    assert len(frame) == len(NS) * len(UBATCH) * len(FLASH) * len(TESTS)  # one row per knob value
    ratio = frame["after/before"]
    assert ratio[frame["ubatch"] == "2048"].round(9).eq(0.8).all()
    assert ratio[frame["ubatch"] == ""].round(9).eq(1.0).all()
    assert set(frame["config_key"]) == {key(n, ub, fa) for n, ub, fa in itertools.product(NS, UBATCH, FLASH)}


def test_knob_sweep_plot(table):
    fig = plots.plot_sweep(table, "ubatch")
    pp_ax, tg_ax = fig.axes[:2]
    for ax, test in ((pp_ax, "pp64"), (tg_ax, "tg16")):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["default", "2048"]
        lines = {c.get_label(): list(c.lines[0].get_ydata()) for c in ax.containers}
        assert len(lines) == len(NS) * len(FLASH)  # one per (parameters, other knob)
        for n, fa in itertools.product(NS, FLASH):
            label = key(n, "", fa)
            assert lines[label] == pytest.approx([expected_mean(n, ub, fa, test) for ub in UBATCH])
    assert plots.sweep_axes(table) == ["param", "ubatch", "flash_attn"]
    with pytest.raises(ValueError):
        plots.plot_sweep(table, "no-such-knob")


def test_heatmap_cells_and_best_cell(table):
    from matplotlib.patches import Rectangle

    fig = plots.plot_heatmap(table, "ubatch")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    for ax, test in zip(panels, TESTS):
        combos = list(itertools.product(NS, UBATCH, FLASH))
        best_fa = max(combos, key=lambda c: expected_mean(*c, test))[2]  # the other knob held at the best's
        want = np.array([[expected_mean(n, ub, best_fa, test) for ub in UBATCH] for n in NS])
        assert np.allclose(ax.images[0].get_array(), want)
        texts = [t.get_text() for t in ax.texts]
        fmt = "{:.0f}" if want.max() >= 100 else "{:.1f}"
        assert texts == [fmt.format(v) for v in want.flat]
        i, j = np.unravel_index(np.argmax(want), want.shape)
        marks = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_edgecolor()[:3] == (1.0, 0.0, 0.0)]
        assert [(m.get_x(), m.get_y()) for m in marks] == [(j - 0.5, i - 0.5)]
        assert f"fa={'on' if best_fa else 'default'}" in ax.get_title()
    assert plots.plot_heatmap(table.assign(ubatch=""), "ubatch") is None  # nothing varies: no heatmap


def test_report_with_knobs(sweep):
    result = run_cli("report", sweep)
    assert result.returncode == 0, result.stderr
    report = (sweep / "report.md").read_text()
    assert "- **Knobs varied:** ubatch (ub): default, 2048; flash_attn (fa): default, on" in report
    assert "- **Knobs fixed:** load=mlock" in report
    best = report.split("## Best configuration", 1)[1].split("\n## ", 1)[0]
    want = max(itertools.product(NS, UBATCH, FLASH), key=lambda c: expected_mean(*c, "tg16"))
    assert f"| tg | tg16 | {key(*want)} | ub={want[1] or 'default'} fa={'on' if want[2] else 'default'} |" in best
    for name in ("param_sweep", "knob_ubatch", "heatmap_ubatch", "knob_flash_attn", "heatmap_flash_attn"):
        assert (sweep / "plots" / f"{name}.png").exists(), name
        assert f"![{name}](plots/{name}.png)" in report
    community = pd.read_csv(sweep / "community.csv", dtype=str, keep_default_na=False)
    assert len(community) == 16 and set(community["ubatch"]) == {"", "2048"}
    assert set(community["load_mode"]) == {"mlock"}


def test_table_csv_lists_a_later_knob_only_where_a_row_sets_it(table):
    """table.csv drops the columns of knobs added after folders were written (`listed_when_set`) where no row
    sets them, and keeps them where one does; the summary itself keeps every knob."""
    from harness.analysis.report import table_file_frame
    from harness.knobs import KNOB_TABLE

    later = [k.name for k in KNOB_TABLE if k.listed_when_set]
    assert later and all(name in table for name in later)
    unset = table.assign(**{name: "" for name in later})
    assert not set(later) & set(table_file_frame(unset).columns)
    one_set = unset.assign(mla=["1"] + [""] * (len(unset) - 1))
    kept = table_file_frame(one_set).columns
    assert "mla" in kept and not {"swa_full", "attn_max_batch_mib"} & set(kept)
