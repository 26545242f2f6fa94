"""Load one or many results folders (`runs.csv`, written by `harness.results.store`, read by
`harness.results.reader`) into one tidy pandas frame.

One row per measured test and process, as in runs.csv, plus:

- `sweep_dir`: the folder the row came from (its name is `sweep_label`, unique across the folders loaded);
- `samples`: `tps_samples` parsed into a list of floats (empty when there are none);
- `n_samples`: how many;
- `kind` ("pp", "tg", "pp+tg"), `size` (prompt or generated tokens), `depth` (context already filled, 0 when
  none) and `concurrency` (concurrent requests, 1 when none), all parsed from `test` (`pp64`, `tg16x3`,
  `pp64@d128`, `pp64+tg16`: `harness.results.record.parse_test`);
- `ok`: status == "ok"; `skipped`: status starts with "skipped";
- the engine knobs (`harness.analysis.knobs.KNOBS`: `ubatch`, `flash_attn`, `load_mode`, ...) normalized to
  text, "" for the engine's default and for a column the folder lacks; `knobs`: the non-default ones as text;
- `config_key`: the configuration's name within its (sweep, model, engine, tool), see `config_key`; it names
  the knobs that vary within the sweep (`first-n-experts(n=4) ub=2048`).

Every schema version is read (`harness.results.schema`: the format history and its loaders). Version 1 has
one row per (configuration, test) and none of version 2's columns: its rows read as process 0
(`process_index` 0), without warnings (`warnings` ""), and the other new columns (`tps_ci_low`, `tps_ci_high`,
`sample_ms_mean`, `cpus`, `rpc_cpus`) empty. Per-device figures are not columns here: `load_devices` (one row
per run and device). `model`, `strategy`, `strategy_params`, `placement`, `engine`, `tool` and `warnings` are
strings ("" when empty).

A folder without runs.csv, or a row with a schema version this code does not know, is a `UserError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.analysis.knobs import KNOBS, add_knob_columns, knob_texts, varying_knobs
from harness.errors import UserError
from harness.results.reader import find_folder, read_devices, read_runs
from harness.results.record import parse_samples, parse_test  # noqa: F401  (the analysis's names for them)
from harness.results.schema import SUPPORTED_SCHEMA_VERSIONS  # noqa: F401


def _json_dict(cell) -> dict:
    try:
        value = json.loads(cell)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_folder(folder: str | Path) -> pd.DataFrame:
    """One results folder (the one holding runs.csv, or its parent holding exactly one sweep), through the one
    reader (`harness.results.reader`: every schema version, checked)."""
    folder = find_folder(folder)
    df = read_runs(folder)
    df["sweep_dir"] = str(folder.resolve())
    return df


def load_devices(folders: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The per-device figures of one or many results folders (devices.csv, or an older runs.csv's per-GPU and
    per-device columns): one row per (run_id, device), with `sweep_dir`; join on `run_id` with `load_results`."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    frames = []
    for f in folders:
        found = find_folder(f)
        devices = read_devices(found)
        devices["sweep_dir"] = str(found.resolve())
        frames.append(devices)
    if not frames:
        raise UserError("no results folders given")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def load_results(folders: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Load one or many results folders into one tidy frame (see the module docstring)."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    frames = [load_folder(f) for f in folders]
    if not frames:
        raise UserError("no results folders given")
    labels = _labels([Path(f["sweep_dir"].iat[0]) if len(f) else Path(".") for f in frames])
    for frame, label in zip(frames, labels):
        frame["sweep_label"] = label
    df = pd.concat(frames, ignore_index=True).copy() if len(frames) > 1 else frames[0]  # copy: consolidated
    df["status"] = df["status"].fillna("").astype(str)
    df["ok"] = df["status"] == "ok"
    df["skipped"] = df["status"].str.startswith("skipped")
    df["samples"] = df["tps_samples"].map(parse_samples) if "tps_samples" in df else [[] for _ in range(len(df))]
    df["n_samples"] = df["samples"].map(len)
    parsed = pd.DataFrame([parse_test(t) for t in df["test"].fillna("")], index=df.index)
    for col in parsed.columns:
        df[col] = parsed[col]
    df["process_index"] = pd.to_numeric(df["process_index"], errors="coerce").fillna(0).astype(int)
    for col in ("placement", "strategy", "strategy_params", "engine", "tool", "model", "warnings"):
        if col not in df:
            df[col] = ""
        df[col] = df[col].fillna("").astype(str)
    params = {p: _param_value(p) for p in df["strategy_params"].unique()}
    df["param_value"] = df["strategy_params"].map(params).astype(float) if len(df) else pd.Series(dtype=float)
    add_knob_columns(df)
    df["config_key"] = _config_keys(df) if len(df) else pd.Series(dtype=str)
    return df


def config_key(strategy: str, strategy_params: str, placement: str, full: bool = False, knobs: str = "") -> str:
    """A configuration's stable name from its strategy, parameters and placement text, then its knob settings
    (`knobs`: `knob_text`, e.g. "ub=2048 fa=on"; `load_results` passes the knobs that vary within the sweep).
    The placement text when it is the strategy's own label (`first-n-experts(n=2)`, what the runner writes: the
    strategy with all its parameters); else `label @ placement` (label: the strategy with the parameters of
    `strategy_params`), so two strategies with the same placement text (engine-fit and all-gpu on a small
    model) stay apart; `engine defaults` without a strategy. `full` always gives `label @ placement` (unless
    they are equal): `load_results` uses it for the configurations whose short names would coincide within a
    (sweep, model, engine, tool), so a name is unique there."""
    name = _placement_name(strategy, strategy_params, placement, full)
    knobs = str(knobs or "").strip()
    return f"{name} {knobs}" if knobs else name


def _placement_name(strategy: str, strategy_params: str, placement: str, full: bool) -> str:
    strategy, placement = str(strategy or ""), str(placement or "")
    raw = str(strategy_params or "").strip()
    params = _json_dict(raw)
    if params:
        label = f"{strategy}({', '.join(f'{k}={v}' for k, v in params.items())})"
    elif raw and raw != "{}":
        label = f"{strategy}({raw})"  # not a JSON object: kept as written
    else:
        label = strategy
    if not label:
        return placement or "engine defaults"
    if placement == label or not placement:
        return label
    if not full and strategy and (placement == strategy or placement.startswith(strategy + "(")):
        return placement
    return f"{label} @ {placement}"


IDENTITY = ["strategy", "strategy_params", "placement", *KNOBS]
SCOPE = ["sweep_label", "model", "engine", "tool"]


def _config_keys(df: pd.DataFrame) -> list[str]:
    """`config_key` per row (computed once per distinct configuration), naming the knobs that vary within the
    row's sweep; the full form where short names coincide within a (sweep, model, engine, tool)."""
    distinct = df.drop_duplicates([*SCOPE, *IDENTITY])[[*SCOPE, *IDENTITY]].copy()
    texts = pd.Series("", index=distinct.index, dtype=object)
    for _, part in distinct.groupby("sweep_label", sort=False):
        texts.loc[part.index] = knob_texts(part, varying_knobs(df[df["sweep_label"] == part["sweep_label"].iat[0]]))
    distinct["_knobs"] = texts
    triple = ["strategy", "strategy_params", "placement"]
    distinct["_key"] = [config_key(*t) for t in zip(*(distinct[c] for c in [*triple, "_knobs"]))]
    clash = distinct.duplicated([*SCOPE, "_key"], keep=False)
    distinct.loc[clash, "_key"] = [config_key(s, p, pl, True, k) for s, p, pl, k in
                                   zip(*(distinct.loc[clash, c] for c in [*triple, "_knobs"]))]
    keys = {tuple(row[:-1]): row[-1] for row in distinct[[*SCOPE, *IDENTITY, "_key"]].itertuples(index=False)}
    return [keys[t] for t in zip(*(df[c] for c in [*SCOPE, *IDENTITY]))]


def _param_value(cell) -> float | None:
    """The single numeric parameter of a parametric strategy (n=2 -> 2.0), None when there is not exactly one."""
    numbers = [v for v in _json_dict(cell).values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(numbers[0]) if len(numbers) == 1 else None


def param_name(cell) -> str | None:
    """The name of that single numeric parameter (`n`, `k`), or None."""
    names = [k for k, v in _json_dict(cell).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return names[0] if len(names) == 1 else None


def _labels(paths: list[Path]) -> list[str]:
    """Short unique names for the folders: their own names, then with parents as needed."""
    depth = 1
    while True:
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels) or depth > max(len(p.parts) for p in paths):
            return labels if len(set(labels)) == len(labels) else [f"{lab}#{i}" for i, lab in enumerate(labels)]
        depth += 1


def load_meta(folder: str | Path) -> dict:
    """meta.json of a results folder ({} when absent or unreadable)."""
    path = Path(folder) / "meta.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_phase_windows(folder: str | Path, telemetry_file: str) -> dict | None:
    """The phase windows saved beside a telemetry file (`<id>.phases.json`: test name -> [[start_s, end_s]])."""
    path = Path(folder) / str(telemetry_file).replace(".csv.gz", ".phases.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_telemetry(folder: str | Path, config_id_or_file: str) -> pd.DataFrame | None:
    """The telemetry time series of one configuration (`telemetry/<config_id>.csv.gz`, or the relative path in
    the `telemetry_file` column); None when the file is absent."""
    folder = Path(folder)
    name = str(config_id_or_file)
    path = folder / name if "/" in name or name.endswith(".gz") else folder / "telemetry" / f"{name}.csv.gz"
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, EOFError):
        return None
