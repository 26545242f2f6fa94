"""Load one or many results folders (`runs.csv`, written by `harness.store`) into one tidy pandas frame.

One row per measured test and process, as in runs.csv, plus:

- `sweep_dir`: the folder the row came from (its name is `sweep_label`, unique across the folders loaded);
- `samples`: `tps_samples` parsed into a list of floats (empty when there are none);
- `n_samples`: how many;
- `kind` ("pp", "tg", "pp+tg"), `size` (prompt or generated tokens), `depth` (context already filled, 0 when
  none) and `concurrency` (concurrent requests, 1 when none), all parsed from `test` (`pp64`, `tg16x3`,
  `pp64@d128`, `pp64+tg16`);
- `ok`: status == "ok"; `skipped`: status starts with "skipped";
- the engine knobs (`harness.analysis.knobs.KNOBS`: `ubatch`, `flash_attn`, `load_mode`, ...) normalized to
  text, "" for the engine's default and for a column the folder lacks; `knobs`: the non-default ones as text;
- `config_key`: the configuration's name within its (sweep, model, engine, tool), see `config_key`; it names
  the knobs that vary within the sweep (`first-n-experts(n=4) ub=2048`).

Schema versions 1 and 2 are read (`harness.store`). Version 1 has one row per (configuration, test) and none
of version 2's columns: its rows read as process 0 (`process_index` 0), without warnings (`warnings` ""), and
the other new columns (`tps_ci_low`, `tps_ci_high`, `sample_ms_mean`, `cpus`, `rpc_cpus`) empty. `model`,
`strategy`, `strategy_params`, `placement`, `engine`, `tool` and `warnings` are strings ("" when empty).

A folder without runs.csv, or a row with a schema version this code does not know, is a `UserError`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from harness.analysis.knobs import KNOBS, add_knob_columns, knob_texts, varying_knobs
from harness.errors import UserError

SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})
# columns version 2 added, and what a version-1 row (or an empty cell) reads as
_NEW_COLUMNS = {"process_index": 0, "warnings": "", "tps_ci_low": None, "tps_ci_high": None,
                "sample_ms_mean": None, "cpus": None, "rpc_cpus": None}

_TEST = re.compile(r"^(?P<kind>pp|tg|pp(?P<p>\d+)\+tg)(?P<size>\d+)(?:x(?P<conc>\d+))?(?:@d(?P<depth>\d+))?$")


def parse_test(test: str) -> dict:
    """`pp64` -> kind pp, size 64; `tg16x3@d128` -> kind tg, size 16, concurrency 3, depth 128.
    An unrecognised name gives kind None (the row is kept, just not classified)."""
    match = _TEST.match(str(test).strip())
    if not match:
        return {"kind": None, "size": None, "depth": 0, "concurrency": 1}
    kind = match["kind"]
    if match["p"]:
        kind = "pp+tg"
    return {"kind": kind, "size": int(match["size"]), "depth": int(match["depth"] or 0),
            "concurrency": int(match["conc"] or 1)}


def parse_samples(cell) -> list[float]:
    """A `tps_samples` cell (a JSON list as written; a single number is one sample) as floats; [] when empty or
    unreadable."""
    if cell is None or (isinstance(cell, float) and pd.isna(cell)) or str(cell).strip() == "":
        return []
    try:
        values = json.loads(cell)
    except (TypeError, ValueError):
        return []
    if not isinstance(values, list):
        values = [values]
    return [float(v) for v in values if v is not None]


def _json_dict(cell) -> dict:
    try:
        value = json.loads(cell)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_folder(folder: str | Path) -> pd.DataFrame:
    """One results folder (the one holding runs.csv, or its parent holding exactly one sweep)."""
    folder = Path(folder)
    csv_path = folder / "runs.csv"
    if not csv_path.exists():
        subs = sorted(p.parent for p in folder.glob("*/runs.csv")) if folder.is_dir() else []
        if len(subs) == 1:
            folder, csv_path = subs[0], subs[0] / "runs.csv"
        else:
            hint = f"; it holds {len(subs)} sweeps, name one" if subs else ""
            raise UserError(f"no runs.csv in {folder} (not a results folder){hint}")
    try:
        df = pd.read_csv(csv_path, dtype={"reason": "string", "strategy_params": "string", "engine_commit": "string",
                                          "warnings": "string", "cpus": "string", "rpc_cpus": "string"},
                         keep_default_na=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{csv_path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{csv_path} is not a readable runs.csv: {str(exc).splitlines()[0]}") from None
    df = df.copy()  # one block per dtype: read_csv leaves one per column, and every insert after warned
    if "schema_version" not in df.columns:
        raise UserError(f"{csv_path} has no schema_version column (not a moebench runs.csv)")
    versions = set(pd.to_numeric(df["schema_version"], errors="coerce").dropna().astype(int))
    unknown = versions - SUPPORTED_SCHEMA_VERSIONS
    bad = df["schema_version"].isna() | pd.to_numeric(df["schema_version"], errors="coerce").isna()
    if unknown or bad.any():
        what = sorted(unknown) or sorted(set(df.loc[bad, "schema_version"].astype(str)))
        raise UserError(f"{csv_path}: unknown schema version {', '.join(map(str, what))}; this moebench reads "
                        f"{', '.join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))} (upgrade moebench)")
    df["sweep_dir"] = str(folder.resolve())
    return df


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
    for col, default in _NEW_COLUMNS.items():
        if col not in df:
            df[col] = default
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
