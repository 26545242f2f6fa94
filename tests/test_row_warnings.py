"""Typed stability warnings (`harness.warnings`): one way to write a row's `warnings` cell, and the reading of both
that and the free text of schema 1/2 rows."""

from __future__ import annotations

import json

import pandas as pd

from harness.analysis.stability import warning_lines
from harness.analysis.stats import join_warnings
from harness.intervals import interval
from harness.runner.stability import row_warnings
from harness.warnings import KINDS, RowWarning, decode_warnings, encode_warnings, legacy_kind, messages

NOISY = dict(repetitions=[100, 101, 99, 160], sample_ms=40, ci=interval([100.0, 130.0, 80.0]),
             process_means=[100, 130, 80], oversubscribed="oversubscribed: 3 threads on 1 CPUs (0)",
             telemetry={"telemetry_samples": 3, "other_cpu_pct_mean": 90, "swap_io_pages_s_peak": 12.0,
                        "gpu_throttle_reasons": "hw_thermal_slowdown"}, n_cpus=2)


def test_a_warning_round_trips_through_the_cell():
    found = row_warnings(**NOISY)
    cell = encode_warnings(found)
    assert [item["kind"] for item in json.loads(cell)] == [w.kind for w in found]
    assert decode_warnings(cell) == found
    assert encode_warnings([]) == "" and decode_warnings("") == [] and decode_warnings(float("nan")) == []
    odd = RowWarning("cv", "cv 12% >= 10%; with a semicolon and \"quotes\" ≥", "fix it")
    assert decode_warnings(encode_warnings([odd])) == [odd]


def test_an_old_free_text_cell_decodes_to_the_kinds_its_sentences_name():
    found = row_warnings(**NOISY)
    old_cell = "; ".join(w.message for w in found)  # what schema 2 rows hold
    decoded = decode_warnings(old_cell)
    assert [w.message for w in decoded] == [w.message for w in found]
    assert [w.kind for w in decoded] == [w.kind for w in found] == [legacy_kind(w.message) for w in found]
    assert {w.kind for w in decoded} <= set(KINDS)


def test_the_report_reads_both_cells_alike():
    found = row_warnings(**NOISY)
    base = {"sweep_label": "s", "model": "m", "engine": "e", "tool": "llama-bench", "config_key": "all-gpu",
            "test": "tg16"}
    new = pd.DataFrame([{**base, "warnings": encode_warnings(found)}, {**base, "warnings": ""}])
    old = pd.DataFrame([{**base, "warnings": messages(found)}, {**base, "warnings": ""}])
    assert warning_lines(new, False) == warning_lines(old, False)
    assert join_warnings(new["warnings"]) == join_warnings(old["warnings"]) == messages(found)
    assert "| GPU throttled |" in "\n".join(warning_lines(new, False))


def test_each_kind_once_per_configuration_with_its_remedy():
    from harness.analysis.stability import kinds_by_configuration, telemetry_note, warning_kinds

    base = {"sweep_label": "s", "model": "m", "engine": "e", "tool": "llama-bench", "config_key": "all-gpu",
            "test": "tg16", "ok": True}
    old = "cv 19% >= 10% across 2 repetitions; telemetry: 2 samples < 10; samples 32 ms < 100 ms"
    new = encode_warnings([RowWarning("cv", "cv 24% >= 10% across 2 processes", "run more processes")])
    df = pd.DataFrame([{**base, "warnings": old, "telemetry_samples": None},
                       {**base, "warnings": new, "telemetry_samples": 3},
                       {**base, "config_key": "cpu-moe", "warnings": "", "telemetry_samples": 25}])
    kinds = warning_kinds(df)
    assert list(kinds["kind"]) == ["cv", "samples"]  # telemetry is not a row's warning
    assert kinds.set_index("kind").loc["cv", "rows"] == 2 and kinds.set_index("kind").loc["cv", "configurations"] == 1
    assert all(kinds["remedy"])
    assert kinds_by_configuration(df) == {("s", "m", "e", "llama-bench", "all-gpu", "tg16"): ["cv", "samples"]}
    note = telemetry_note(df)
    assert note.startswith("Telemetry (VRAM, PCIe, power, CPU) of 2 of 3 measured rows")
    assert telemetry_note(df.iloc[2:]) is None
    lines = "\n".join(warning_lines(df, False))
    assert "| cv | 2 | 1 |" in lines and "what to do" in lines and note in lines and "| telemetry |" not in lines


def test_the_closing_summary_says_each_kind_once_with_what_to_do():
    from pathlib import Path

    from rich.console import Console

    from harness.cli.run_cmd import print_summary

    console = Console(record=True, width=200)
    print_summary(Path(__file__).parent / "data" / "sweep-v2", console)
    text = console.export_text()
    assert "telemetry: " not in text and "samples < 10" not in text  # 40 rows of it before issue 20
    for kind in ("other processes used", "samples", "cv"):
        lines = [line for line in text.splitlines() if line.startswith(f"warning: {kind} in ")]
        assert len(lines) == 1 and "what to do: " in lines[0], (kind, text)
    assert text.count("note: Telemetry") == 1
    assert len(text.splitlines()) < 50  # one screen
    assert "-1," not in text and "–-" not in text  # intervals never below zero
