"""The results store never loses or tears a row; the reader reads every version it ever wrote."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import UserError
from harness.results.reader import read_devices, read_runs
from harness.results.record import COLUMNS, DEVICE_COLUMNS, RunRecord
from harness.results.schema import SCHEMA_VERSION, V3_REMOVED
from harness.results.store import ResultsStore

DATA = Path(__file__).parent / "data"


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_are_appended_with_schema_version(tmp_path):
    store = ResultsStore(tmp_path / "sweep")
    store.append({"run_id": "a", "status": "ok", "tps_samples": [1.5, 2.5], "command": ["x", "-m", "y z"]})
    ResultsStore(tmp_path / "sweep").append({"run_id": "b", "status": "failed", "reason": 'said "no", then, died'})
    rows = _csv(tmp_path / "sweep" / "runs.csv")
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert all(r["schema_version"] == str(SCHEMA_VERSION) for r in rows)
    assert rows[0]["tps_samples"] == "[1.5, 2.5]" and rows[1]["reason"] == 'said "no", then, died'
    assert list(rows[0]) == list(COLUMNS)
    assert not (tmp_path / "sweep" / "devices.csv").exists()  # no device figures: no device rows


def test_torn_last_line_is_cut_and_complete_rows_kept(tmp_path):
    store = ResultsStore(tmp_path)
    store.append({"run_id": "a", "status": "ok"})
    with open(store.csv_path, "a") as fh:
        fh.write("3,b,default,o")  # a row cut short by a crash
    assert list(read_runs(tmp_path)["run_id"]) == ["a"]  # a reader never sees the torn line
    store = ResultsStore(tmp_path)
    store.append({"run_id": "c", "status": "ok"})
    assert [r["run_id"] for r in _csv(store.csv_path)] == ["a", "c"]


def test_torn_device_line_is_cut_too(tmp_path):
    record = RunRecord(run_id="a", status="ok")
    record.device_bytes("actual_model_bytes", {"CPU": 10})
    ResultsStore(tmp_path).append(record)
    with open(tmp_path / "devices.csv", "a") as fh:
        fh.write("3,b,CU")
    store = ResultsStore(tmp_path)
    assert (tmp_path / "devices.csv").read_text().endswith("\n")
    assert list(read_devices(tmp_path)["device"]) == ["CPU"]
    assert store.rows()[0]["run_id"] == "a"


def test_unknown_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not in the results schema"):
        ResultsStore(tmp_path).append({"run_id": "a", "tokens": 3})
    with pytest.raises(ValueError, match="not in the results schema"):
        RunRecord().update(vram_peak_mib_gpu0=1.0)  # schema 2's per-GPU columns are device rows now


def test_a_process_rows_are_written_in_one_write(tmp_path, monkeypatch):
    """llama-bench's pp and tg rows of one process land together (a kill between them left resume a process
    with half its rows); its device rows in one write of their own, before."""
    import os

    store = ResultsStore(tmp_path)
    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    pp, tg = RunRecord(run_id="a", test="pp512"), RunRecord(run_id="b", test="tg128")
    for r in (pp, tg):
        r.device_bytes("predicted_model_bytes", {"CPU": 1, "CUDA0": 2})
    store.append(pp, tg)
    assert len(writes) == 2 and writes[0].count(b"\n") == 5 and writes[1].count(b"\n") == 3  # headers + rows
    assert [r["test"] for r in store.rows()] == ["pp512", "tg128"]
    with pytest.raises(ValueError):
        store.append({"run_id": "c"}, {"no_such_column": 1})
    assert len(store.rows()) == 2   # nothing of a refused batch is written


def _sweep_record(run_id: str, test: str) -> RunRecord:
    """A run as the runner fills it: the process's record, then the test's figures and its GPUs' telemetry."""
    process = RunRecord(run_id="p", config_id="cfg", process_index=0, sweep="s", tool="llama-bench",
                        strategy="all-gpu", engine="mainline", model="synth:tiny", predicted_vram_bytes=300)
    process.update(threads=4, ubatch=512, host_name="box")
    process.device_bytes("predicted_vram_bytes", {"CUDA0": 300, "CUDA1": 200})
    process.device_bytes("predicted_model_bytes", {"CPU": 10, "CUDA0": 250, "CUDA1": 150})
    process.device_bytes("actual_model_bytes", {"CPU": 11, "CUDA0": 251, "CUDA1": 151})
    return process.updated(run_id=run_id, status="ok", test=test, n_prompt=64 if test == "pp64" else 0,
                           n_gen=16 if test == "tg16" else 0, n_depth=0, tps_mean=100.5, tps_samples=[100.0, 101.0],
                           vram_peak_mib=6100.0,
                           per_gpu={0: {"vram_peak_mib": 6000.0, "gpu_util_pct_mean": 90.0,
                                        "pcie_rx_mib_s_mean": 500.0, "pcie_tx_mib_s_mean": 10.0},
                                    8: {"vram_peak_mib": 6100.0, "gpu_util_pct_mean": None,
                                        "pcie_rx_mib_s_mean": 1.0, "pcie_tx_mib_s_mean": 2.0}})


def test_a_schema_3_folder_round_trips(tmp_path):
    """What the runner writes reads back the same: runs.csv without per-device columns, devices.csv one row per
    run and device (a ninth GPU included), the buffers and predictions by the engine's device names."""
    store = ResultsStore(tmp_path)
    store.append(_sweep_record("r-pp", "pp64"), _sweep_record("r-tg", "tg16"))
    header = (tmp_path / "runs.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS and not set(V3_REMOVED) & set(header) and len(header) < 100
    runs = read_runs(tmp_path)
    assert list(runs["run_id"]) == ["r-pp", "r-tg"] and (runs["schema_version"] == 3).all()
    assert list(runs["threads"]) == [4, 4] and list(runs["ubatch"]) == [512, 512]
    assert list(runs["tps_samples"]) == ["[100.0, 101.0]"] * 2 and runs["host_name"].iat[0] == "box"
    devices = read_devices(tmp_path)
    assert tuple(devices.columns) == DEVICE_COLUMNS
    pp = devices[devices["run_id"] == "r-pp"].set_index("device")
    assert list(pp.index) == ["gpu0", "gpu8", "CPU", "CUDA0", "CUDA1"]
    assert (pp.at["gpu0", "gpu_index"], pp.at["gpu0", "vram_peak_mib"], pp.at["gpu0", "pcie_rx_mib_s_mean"]) \
        == (0, 6000.0, 500.0)
    assert pp.at["gpu8", "gpu_index"] == 8 and pd.isna(pp.at["gpu8", "gpu_util_pct_mean"])
    assert (pp.at["CUDA0", "predicted_vram_bytes"], pp.at["CUDA0", "predicted_model_bytes"],
            pp.at["CUDA0", "actual_model_bytes"]) == (300, 250, 251)
    assert pp.at["CPU", "actual_model_bytes"] == 11
    assert pd.isna(pp.at["CPU", "predicted_vram_bytes"])  # the CPU has no VRAM prediction
    assert str(devices["actual_model_bytes"].dtype) == "Int64" and devices["vram_peak_mib"].dtype == float
    assert len(devices[devices["run_id"] == "r-tg"]) == 5


def test_device_rows_of_a_process_run_again_are_read_once(tmp_path):
    """Killed between its two writes, a process is run again on resume: its device rows are written twice, the
    reader keeps the last, and never device rows of a run that runs.csv lacks."""
    store = ResultsStore(tmp_path)
    first = _sweep_record("r-pp", "pp64")
    ghost = _sweep_record("ghost", "tg16")
    for killed in (ghost, first):  # each written to devices.csv, then the harness was killed
        store._devices.append([{"schema_version": SCHEMA_VERSION, **d} for d in killed.device_rows()])
    again = _sweep_record("r-pp", "pp64")
    again.device_bytes("actual_model_bytes", {"CPU": 12})
    store.append(again)
    assert len(_csv(tmp_path / "devices.csv")) == 15
    devices = read_devices(tmp_path)
    assert len(devices) == 5 and devices.set_index("device").at["CPU", "actual_model_bytes"] == 12


def test_schema_1_folder_loads(tmp_path):
    """sweep-tiny: version 1, one row per (configuration, test), the JSON buffer cells."""
    runs = read_runs(DATA / "sweep-tiny")
    assert (runs["schema_version"] == 1).all() and (runs["process_index"] == 0).all()
    assert "predicted_model_buffers" not in runs and "actual_model_buffers" not in runs
    devices = read_devices(DATA / "sweep-tiny")
    assert set(devices["run_id"]) <= set(runs["run_id"]) and len(devices)
    assert devices["predicted_model_bytes"].notna().any() and devices["actual_model_bytes"].notna().any()
    assert not devices["device"].str.startswith("gpu").any()  # no GPU on the machine that wrote it


def read_devices_of_a_v3_folder(tmp_path):
    ResultsStore(tmp_path / "v3").append(_sweep_record("r-pp", "pp64"))
    return read_devices(tmp_path / "v3")


def test_schema_2_folder_loads_into_the_same_shape(tmp_path):
    """sweep-v2 (the golden folder): its 32 per-GPU columns and JSON cells become device rows."""
    runs = read_runs(DATA / "sweep-v2")
    assert (runs["schema_version"] == 2).all() and not set(V3_REMOVED) & set(runs.columns)
    devices = read_devices(DATA / "sweep-v2")
    assert tuple(devices.columns) == DEVICE_COLUMNS and (devices["schema_version"] == 2).all()
    assert devices.dtypes.equals(read_devices_of_a_v3_folder(tmp_path).dtypes)  # the same shape
    raw = {r["run_id"]: r for r in _csv(DATA / "sweep-v2" / "runs.csv")}
    import json

    for run_id, group in devices.groupby("run_id"):
        row = raw[run_id]
        want = json.loads(row["predicted_model_buffers"] or "{}")
        got = group.dropna(subset=["predicted_model_bytes"]).set_index("device")["predicted_model_bytes"]
        assert {k: int(v) for k, v in got.items()} == want
    # a folder with a GPU: its per-GPU cells become gpu<i> rows
    folder = tmp_path / "v2-gpu"
    shutil.copytree(DATA / "sweep-v2", folder, ignore=shutil.ignore_patterns("expected", "telemetry"))
    rows = _csv(folder / "runs.csv")
    rows[0].update(vram_peak_mib_gpu1="1234.5", pcie_rx_mib_s_mean_gpu1="7.0")
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    gpu = read_devices(folder).query("device == 'gpu1'")
    assert len(gpu) == 1 and gpu["run_id"].iat[0] == rows[0]["run_id"]
    assert (gpu["gpu_index"].iat[0], gpu["vram_peak_mib"].iat[0], gpu["pcie_rx_mib_s_mean"].iat[0]) == (1, 1234.5, 7.0)


def test_resuming_a_schema_2_folder_keeps_its_rows_and_widens_its_header(tmp_path):
    folder = tmp_path / "v2"
    shutil.copytree(DATA / "sweep-v2", folder, ignore=shutil.ignore_patterns("expected", "telemetry"))
    before = read_devices(folder)
    n = len(read_runs(folder))
    store = ResultsStore(folder)
    store.append(_sweep_record("new-pp", "pp64"))
    runs = read_runs(folder)
    assert len(runs) == n + 1 and list(runs["schema_version"].unique()) == [2, 3]
    devices = read_devices(folder)
    assert len(devices) == len(before) + 5 and set(devices.query("run_id == 'new-pp'")["schema_version"]) == {3}


def test_unknown_version_is_one_line_error(tmp_path):
    store = ResultsStore(tmp_path)
    store.append({"run_id": "a", "status": "ok"})
    text = (tmp_path / "runs.csv").read_text().replace("\n3,", "\n99,")
    (tmp_path / "runs.csv").write_text(text)
    with pytest.raises(UserError) as err:
        read_runs(tmp_path)
    assert "\n" not in str(err.value) and "unknown schema version 99" in str(err.value)
    assert "reads 1, 2, 3" in str(err.value)
    with pytest.raises(UserError, match="unknown schema version 99"):
        ResultsStore(tmp_path)  # a newer moebench's folder is not widened or appended to
    assert (tmp_path / "runs.csv").read_text() == text


def test_a_device_column_added_later_widens_devices_csv(tmp_path):
    """A folder whose devices.csv predates a figure (here `actual_model_bytes`) is widened on resume like
    runs.csv: its rows kept, the new cells empty, the new rows lined up."""
    old = [c for c in DEVICE_COLUMNS if c != "actual_model_bytes"]
    ResultsStore(tmp_path).append({"run_id": "a", "status": "ok"}, {"run_id": "b", "status": "ok"})
    with open(tmp_path / "devices.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old, lineterminator="\n")
        writer.writeheader()
        writer.writerow({"schema_version": 3, "run_id": "a", "device": "CPU", "predicted_model_bytes": 5})
    record = RunRecord(run_id="b", status="ok")
    record.device_bytes("actual_model_bytes", {"CPU": 7})
    store = ResultsStore(tmp_path)
    store._devices.append([{"schema_version": SCHEMA_VERSION, **d} for d in record.device_rows()])
    assert tuple(_csv(tmp_path / "devices.csv")[0]) == DEVICE_COLUMNS
    devices = read_devices(tmp_path).set_index("run_id")
    assert (devices.at["a", "predicted_model_bytes"], devices.at["b", "actual_model_bytes"]) == (5, 7)
    assert pd.isna(devices.at["a", "actual_model_bytes"])


def test_a_resumed_sweep_keeps_the_earlier_sessions_meta(tmp_path):
    """meta.json of a resumed folder (here with another config) keeps the earlier sessions' meta, oldest first."""
    import json

    from harness.analysis.load import load_meta
    from harness.results.store import ResultsStore

    store = ResultsStore(tmp_path / "sweep")
    store.write_meta({"config": {"tools": ["llama-bench"]}, "started_at": "1"})
    store.write_meta({"config": {"tools": ["llama-server"]}, "started_at": "2"})
    store.write_meta({"config": {"tools": ["llama-server"]}, "started_at": "3"})
    meta = json.loads((tmp_path / "sweep" / "meta.json").read_text())
    assert meta["config"]["tools"] == ["llama-server"] and meta["started_at"] == "3"
    assert [m["started_at"] for m in meta["earlier"]] == ["1", "2"]
    assert meta["earlier"][0]["config"]["tools"] == ["llama-bench"] and "earlier" not in meta["earlier"][1]
    assert load_meta(tmp_path / "sweep")["started_at"] == "3"

    (tmp_path / "sweep" / "meta.json").write_text('{"config": {"tools"')  # torn
    store.write_meta({"started_at": "4"})
    meta = json.loads((tmp_path / "sweep" / "meta.json").read_text())
    assert meta["earlier"] == [{"unreadable": '{"config": {"tools"'}] and meta["started_at"] == "4"
