"""The one table of engine knobs (`harness.knobs.KNOB_TABLE`) drives bench.yaml's validation, the planner's
`Knobs`, the runs.csv columns and the analysis's short names."""

from __future__ import annotations

from dataclasses import fields

import pytest

from harness.analysis.knobs import KNOB_LABELS, KNOBS, knob_value
from harness.config import BenchSettings, load_config
from harness.errors import UserError
from harness.knobs import KNOB_COLUMNS, KNOB_NAMES, KNOB_TABLE, Knobs
from harness.results.record import COLUMNS

BAD = {int: ("0", "a whole number >= 1"), bool: ("maybe", "true or false")}


def _bench(tmp_path, line: str):
    path = tmp_path / "bench.yaml"
    path.write_text(f"models: [{{synth: tiny}}]\nengines: [mainline]\nbench:\n  {line}\n")
    return path


@pytest.mark.parametrize("knob", KNOB_TABLE, ids=lambda k: k.name)
def test_each_knob_of_the_table_is_validated_as_the_table_says(tmp_path, knob):
    field = BenchSettings.model_fields[knob.name]
    assert field.default == knob.default and field.description == knob.description
    if knob.type is int and knob.choices:
        bad, expected = "7", "one of " + ", ".join(map(str, knob.choices))
    elif knob.type in BAD:
        bad, expected = BAD[knob.type]
    else:
        bad, expected = "nonsense", ("cache type" if knob.name.startswith("cache_type") else knob.choices[0])
    with pytest.raises(UserError) as info:
        load_config(_bench(tmp_path, f"{knob.name}: [{bad}]"))
    assert f"bench.{knob.name}" in str(info.value) and expected in str(info.value), str(info.value)
    good = (f"[{knob.choices[0]}, {knob.choices[1]}]" if knob.choices
            else {int: "[2, 4]", bool: "[true, false]"}[knob.type])
    assert len(getattr(load_config(_bench(tmp_path, f"{knob.name}: {good}")).bench, knob.name)) == 2


def test_the_table_is_the_planners_the_stores_and_the_analysiss():
    assert tuple(f.name for f in fields(Knobs)) == KNOB_NAMES == KNOBS
    assert sorted(KNOB_COLUMNS) == sorted(KNOB_NAMES) and len(set(k.column_rank for k in KNOB_TABLE)) == len(KNOB_TABLE)
    start = COLUMNS.index(KNOB_COLUMNS[0])
    assert COLUMNS[start:start + len(KNOB_COLUMNS)] == KNOB_COLUMNS
    assert tuple(BenchSettings.model_fields)[-len(KNOB_COLUMNS):] == KNOB_COLUMNS
    assert KNOB_LABELS == {k.name: k.short for k in KNOB_TABLE}
    switches = [k for k in KNOB_TABLE if k.switch]
    assert [knob_value("true", k.name) for k in switches] == ["on"] * len(switches) and len(switches) >= 3


def test_every_knob_of_the_table_is_spelled_for_the_engines():
    from harness.plan.knob_flags import _ORDER, SPELLINGS

    assert sorted(_ORDER) == sorted(KNOB_NAMES)
    assert set(SPELLINGS) == set(KNOB_NAMES) - {"threads"}  # threads: always given, with the CPU budget's count
