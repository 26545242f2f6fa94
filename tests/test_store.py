"""The results store never loses or tears a row."""

from __future__ import annotations

import csv

import pytest

from harness.store import COLUMNS, SCHEMA_VERSION, ResultsStore


def test_rows_are_appended_with_schema_version(tmp_path):
    store = ResultsStore(tmp_path / "sweep")
    store.append({"run_id": "a", "status": "ok", "tps_samples": [1.5, 2.5], "command": ["x", "-m", "y z"]})
    ResultsStore(tmp_path / "sweep").append({"run_id": "b", "status": "failed", "reason": 'said "no", then, died'})
    rows = list(csv.DictReader((tmp_path / "sweep" / "runs.csv").open()))
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert all(r["schema_version"] == str(SCHEMA_VERSION) for r in rows)
    assert rows[0]["tps_samples"] == "[1.5, 2.5]" and rows[1]["reason"] == 'said "no", then, died'
    assert list(rows[0]) == list(COLUMNS)


def test_torn_last_line_is_cut_and_complete_rows_kept(tmp_path):
    store = ResultsStore(tmp_path)
    store.append({"run_id": "a", "status": "ok"})
    with open(store.csv_path, "a") as fh:
        fh.write("1,b,default,o")  # a row cut short by a crash
    store = ResultsStore(tmp_path)
    store.append({"run_id": "c", "status": "ok"})
    rows = list(csv.DictReader(store.csv_path.open()))
    assert [r["run_id"] for r in rows] == ["a", "c"]


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not in the results schema"):
        ResultsStore(tmp_path).append({"run_id": "a", "tokens": 3})


def test_a_process_rows_are_written_in_one_write(tmp_path, monkeypatch):
    """llama-bench's pp and tg rows of one process land together (a kill between them left resume a process
    with half its rows)."""
    import os

    store = ResultsStore(tmp_path)
    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    store.append({"run_id": "a", "test": "pp512"}, {"run_id": "b", "test": "tg128"})
    assert len(writes) == 1
    assert [r["test"] for r in store.rows()] == ["pp512", "tg128"]
    with pytest.raises(ValueError):
        store.append({"run_id": "c"}, {"no_such_column": 1})
    assert len(store.rows()) == 2   # nothing of a refused batch is written
