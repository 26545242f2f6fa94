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
