"""The one reader of a results folder: runs.csv (and devices.csv beside it) of every schema version, checked and
brought to today's shape by the loaders of `harness.results.schema`. Everything that reads results goes through
it: the analysis (`harness.analysis.load`), resume (`harness.runner.schedule.history_from_rows` through
`ResultsStore.rows`), calibrate, explain and tune.

- `read_runs(folder)`: the runs frame, one row per runs.csv row, the columns of `harness.results.record.COLUMNS`
  that the file has (`run_id`, `config_id`, `reason`, `warnings`, ... as text; numbers as numbers).
- `read_devices(folder)`: the device frame, `DEVICE_COLUMNS`: devices.csv's rows (the last of each (run_id,
  device), only runs runs.csv has), and those an older runs.csv held in its columns (`*_gpu<i>`, the
  {device: bytes} cells).
- `read_records(folder)`: the runs as dicts (empty cells None), [] for a folder with no rows yet.
- `by_device(devices, figure)`: one figure of the device frame as run_id -> {device: value}, what schema 2 had
  in a JSON cell (`predicted_model_bytes` was `predicted_model_buffers`).

A torn last line (a writer killed mid-row; the store cuts it when it next opens the folder) is not read. A
folder without runs.csv, an unreadable one, or a row of a schema version this moebench does not know is a
one-line `UserError`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.results.record import BYTES_BY_DEVICE, DEVICE_COLUMNS
from harness.results.schema import check_versions, upgrade

TEXT_COLUMNS = {c: "string" for c in ("run_id", "config_id", "reason", "strategy_params", "engine_commit",
                                      "warnings", "cpus", "rpc_cpus")}
_DEVICE_TEXT = {"run_id": "string", "device": "string"}
_INTEGERS = ("gpu_index", *BYTES_BY_DEVICE)


def find_folder(folder: str | Path) -> Path:
    """The folder holding runs.csv: `folder`, or the one sweep folder inside it."""
    folder = Path(folder)
    if (folder / "runs.csv").exists():
        return folder
    subs = sorted(p.parent for p in folder.glob("*/runs.csv")) if folder.is_dir() else []
    if len(subs) == 1:
        return subs[0]
    hint = f"; it holds {len(subs)} sweeps, name one" if subs else ""
    raise UserError(f"no runs.csv in {folder} (not a results folder){hint}")


def _whole_lines(path: Path) -> bytes:
    data = path.read_bytes()
    return data if data.endswith(b"\n") or not data else data[:data.rfind(b"\n") + 1]


def _read_csv(path: Path, dtype: dict) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(_whole_lines(path)), dtype=dtype, keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable {path.name}: {str(exc).splitlines()[0]}") from None
    check_versions(frame, path)
    return frame.copy()  # one block per dtype: read_csv leaves one per column, and every insert after warned


def read_folder(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, devices) of a results folder (see the module's docstring)."""
    folder = find_folder(folder)
    runs, legacy = upgrade(_read_csv(folder / "runs.csv", TEXT_COLUMNS))
    devices_path = folder / "devices.csv"
    frames = [pd.DataFrame(legacy, columns=list(DEVICE_COLUMNS))] if legacy else []
    if devices_path.exists() and devices_path.stat().st_size:
        frames.append(_read_csv(devices_path, _DEVICE_TEXT))
    if frames:
        devices = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        devices = devices[devices["run_id"].isin(set(runs["run_id"].dropna()))] if "run_id" in runs else devices
        devices = devices.drop_duplicates(["run_id", "device"], keep="last").reset_index(drop=True)
    else:
        devices = pd.DataFrame(columns=list(DEVICE_COLUMNS))
    return runs, _typed(devices)


def _typed(devices: pd.DataFrame) -> pd.DataFrame:
    """One dtype per device column, whichever version the rows came from: counts and bytes nullable integers
    (`Int64`), the telemetry floats, `run_id` and `device` text."""
    devices = devices.copy()
    for col in devices.columns:
        if col in ("run_id", "device"):
            devices[col] = devices[col].astype("string")
        elif col in (*_INTEGERS, "schema_version"):
            devices[col] = pd.to_numeric(devices[col], errors="coerce").round().astype("Int64")
        elif col in DEVICE_COLUMNS:
            devices[col] = pd.to_numeric(devices[col], errors="coerce").astype(float)
    return devices


def read_runs(folder: str | Path) -> pd.DataFrame:
    """The runs frame of a results folder."""
    return read_folder(folder)[0]


def read_devices(folder: str | Path) -> pd.DataFrame:
    """The device frame of a results folder: one row per (run_id, device)."""
    return read_folder(folder)[1]


def read_records(folder: str | Path) -> list[dict]:
    """The runs of a results folder as dicts (empty cells None); [] while it has no rows."""
    path = Path(folder) / "runs.csv"
    if not path.exists() or not _whole_lines(path).strip():
        return []
    runs = read_runs(folder)
    return runs.astype(object).where(runs.notna(), None).to_dict("records")


def by_device(devices: pd.DataFrame, figure: str) -> dict[str, dict[str, float | int]]:
    """run_id -> {device: value} of one device figure, the devices that have it (bytes as ints)."""
    known = devices.dropna(subset=[figure])
    cast = int if figure in BYTES_BY_DEVICE else float
    out: dict[str, dict] = {}
    for run_id, device, value in zip(known["run_id"], known["device"], known[figure]):
        out.setdefault(str(run_id), {})[str(device)] = cast(value)
    return out
