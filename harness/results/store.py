"""The results store, the one writer of a results folder: `runs.csv` (one `RunRecord` a row) and `devices.csv`
beside it (one row per run and device), append-only, the logs in `logs/`, the sweep's `meta.json`.

The rows of one process (llama-bench's pp and tg) are written with a single write() of whole lines per file and
fsync'd, so killing the harness at any moment leaves either all of a process's rows in a file or none of them.
devices.csv is written first: a process whose runs.csv rows are in has its device rows too, and one killed
between the two writes is run again on resume, its device rows written again (the reader keeps the last of a
(run_id, device) and only those of runs in runs.csv). A torn last line (a full disk, a power cut) is cut off
when the store is next opened, and only that line. A folder written by an older moebench is widened once on
resume: its header gets today's columns (rows unchanged, the new cells empty; columns that today's rows no
longer have are kept, after today's), so appended rows line up and each row keeps its own `schema_version`;
a folder holding a version this moebench does not know is refused (a `UserError`), untouched.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Mapping

from harness.results.reader import read_folder, read_records
from harness.results.record import COLUMNS, DEVICE_COLUMNS, RunRecord
from harness.results.schema import SCHEMA_VERSION


class AppendOnlyCsv:
    """One append-only CSV file with a fixed set of columns (`columns`, in order)."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = Path(path)
        self.columns = tuple(columns)
        self._repair()
        self.header = self._widen()

    def _repair(self) -> None:
        """Cut a torn last line (a row not ending in a newline); never touches complete rows."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            fh.truncate(data.rfind(b"\n") + 1)

    def _widen(self) -> tuple[str, ...]:
        """The file's header, once rewritten to hold today's columns when it lacks some (written whole to a
        temporary file, then renamed); today's columns when there is no file yet."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return self.columns
        with open(self.path, newline="") as fh:
            header = next(csv.reader(fh), [])
            if set(self.columns) <= set(header):
                return tuple(header)
            fh.seek(0)
            rows = list(csv.DictReader(fh))
        wanted = (*self.columns, *(c for c in header if c not in self.columns))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=wanted, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = self.path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.path)
        return wanted

    def append(self, rows: list[Mapping]) -> None:
        """Append `rows` (cells by column) in one write() and fsync, the header first into a new file."""
        if not rows:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.header, restval="", lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            writer.writeheader()
        writer.writerows(rows)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)


class ResultsStore:
    """A results folder being written: `append(*records)`, `rows()` (through the reader), `write_meta`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.csv_path = self.folder / "runs.csv"
        self.devices_path = self.folder / "devices.csv"
        self.logs = self.folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.csv_path.exists() and self.csv_path.stat().st_size:
            read_folder(self.folder)  # a folder of a version this moebench does not know is left as it is
        self._runs = AppendOnlyCsv(self.csv_path, COLUMNS)
        self._devices = AppendOnlyCsv(self.devices_path, DEVICE_COLUMNS)

    def append(self, *records: RunRecord | Mapping) -> None:
        """Append the rows of one process, each a `RunRecord` (or its columns as a mapping, checked against the
        schema: an unknown column is a ValueError and nothing of the batch is written): its device rows to
        devices.csv, then its rows to runs.csv, each file in one write() and fsync."""
        records = [r if isinstance(r, RunRecord) else RunRecord.from_columns(r) for r in records]
        version = {"schema_version": SCHEMA_VERSION}
        self._devices.append([{**version, **d} for r in records for d in r.device_rows()])
        self._runs.append([{**version, **r.columns()} for r in records])

    def rows(self) -> list[dict]:
        """Every row written so far, as the reader reads it (`harness.results.reader.read_records`)."""
        return read_records(self.folder)

    def write_meta(self, meta: dict) -> None:
        """meta.json for this session of the sweep; a resumed folder's earlier sessions' meta (another config,
        other engines) is kept under `earlier`, oldest first, so that nothing written is lost."""
        path = self.folder / "meta.json"
        try:
            text = path.read_text()
        except OSError:
            text = None
        try:
            before = json.loads(text) if text is not None else None
        except ValueError:
            before = None
        if text is not None and not isinstance(before, dict):
            before = {"unreadable": text}  # a torn or hand-edited file: its text is kept, not dropped
        if before is not None:
            earlier = before.pop("earlier", [])
            meta = {**meta, "earlier": [*earlier, before]}
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        tmp.replace(path)
