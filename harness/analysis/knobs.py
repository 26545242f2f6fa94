"""Engine knobs as part of a configuration's identity: `ubatch`, `batch`, `threads`, `threads_batch`,
`flash_attn`, `op_offload`, `load_mode` (mmap / no-mmap / mlock), `cache_type_k`, `cache_type_v`, one runs.csv
column each (`KNOBS`). An empty cell is the engine's default; folders written before a knob had its column read
as empty.

Values are normalized to text (`knob_value`): `2048.0` (pandas reads a column with empty cells as floats) is
"2048", the on/off knobs (`flash_attn`, `op_offload`) read true/1/on as "on" and false/0/off as "off", anything
else is kept as written; the default is "".

A configuration's name shows a knob as `<short>=<value>` (`KNOB_LABELS`: `ub=2048`, `fa=on`, `load=mlock`,
`ctk=q8_0`), only for the knobs that vary within its sweep (`varying_knobs`) and only where not the default:
`first-n-experts(n=4) ub=2048`. `knob_text` of all the non-default knobs is the `knobs` column (what a
configuration set, whether it varied or not).
"""

from __future__ import annotations

import math

import pandas as pd

from harness.knobs import KNOB_NAMES, KNOB_TABLE

KNOBS = KNOB_NAMES  # the knobs of `harness.knobs.KNOB_TABLE`, one runs.csv column each
KNOB_LABELS = {knob.name: knob.short for knob in KNOB_TABLE}
_SWITCHES = {knob.name for knob in KNOB_TABLE if knob.switch}
_ON, _OFF = {"true", "1", "on", "yes", "enabled"}, {"false", "0", "off", "no", "disabled"}
DEFAULT_LABEL = "default"


def knob_value(value, knob: str = "") -> str:
    """One cell as text: "" for the default (empty, None, NaN), integers without ".0", on/off for switches."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value).strip()
        if text.lower() in ("nan", "none"):
            return ""
        try:
            number = float(text)
            if number.is_integer() and text.lower() not in ("inf", "-inf"):
                text = str(int(number))
        except ValueError:
            pass
    if knob in _SWITCHES:
        low = text.lower()
        text = "on" if low in _ON else "off" if low in _OFF else text
    return text


def add_knob_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Every `KNOBS` column present and normalized (in place; returns df), then `knobs`: `knob_text` of the row."""
    for knob in KNOBS:
        if knob not in df:
            df[knob] = ""
        else:
            values = df[knob]
            uniques = {v: knob_value(v, knob) for v in pd.unique(values)}
            df[knob] = values.map(uniques).astype(object) if len(values) else values.astype(object)
    df["knobs"] = knob_texts(df, KNOBS)
    return df


def knob_text(settings: dict) -> str:
    """`ub=2048 fa=on`: the non-default settings of `settings` (knob -> value), in `KNOBS` order."""
    return " ".join(f"{KNOB_LABELS.get(k, k)}={v}" for k in KNOBS if (v := settings.get(k, "")) not in ("", None))


def knob_texts(df: pd.DataFrame, knobs) -> list[str]:
    """`knob_text` of each row over the given knobs (absent columns read as default)."""
    knobs = [k for k in KNOBS if k in set(knobs) and k in df]
    if not knobs or not len(df):
        return [""] * len(df)
    return [knob_text(dict(zip(knobs, values))) for values in zip(*(df[k] for k in knobs))]


def knob_settings(row, knobs) -> str:
    """`ub=2048 fa=default`: the given knobs of a row (a mapping), the default named."""
    return " ".join(f"{KNOB_LABELS[k]}={axis_label(row.get(k, ''))}" for k in KNOBS if k in set(knobs))


def varying_knobs(df: pd.DataFrame) -> list[str]:
    """The knobs with more than one value (the default counts as one) in the frame, in `KNOBS` order."""
    return [k for k in KNOBS if k in df and df[k].fillna("").astype(str).nunique() > 1]


def knob_sort_key(value) -> tuple:
    """Order of a knob's values on an axis: the default first, then numbers ascending, then text."""
    text = knob_value(value)
    if text == "":
        return (0, 0.0, "")
    try:
        return (1, float(text), "")
    except ValueError:
        return (2, 0.0, text)


def axis_label(value) -> str:
    """A knob value on an axis or in a legend ("default" for the empty default)."""
    text = knob_value(value)
    return text if text else DEFAULT_LABEL


def describe_fixed(df: pd.DataFrame) -> str:
    """The knobs set to the same non-default value in every row (`fa=on ctk=q8_0`), "" when none."""
    fixed = {}
    for knob in KNOBS:
        if knob in df and len(df):
            values = df[knob].fillna("").astype(str).unique()
            if len(values) == 1 and values[0] != "":
                fixed[knob] = values[0]
    return knob_text(fixed)
