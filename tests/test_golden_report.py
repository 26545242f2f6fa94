"""A results folder written by an earlier moebench reports the same after a change (issue 18): the schema-2
folder in tests/data/sweep-v2 was written at b932238, with the report outputs that commit wrote for it in
expected/ (see its README). No engine runs: the report reads only the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_cli

GOLDEN = Path(__file__).parent / "data" / "sweep-v2"


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("golden") / "sweep-v2"
    shutil.copytree(GOLDEN, folder, ignore=shutil.ignore_patterns("expected"))
    result = run_cli("report", folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


@pytest.mark.parametrize("name", ["table.csv", "community.csv", "report.md"])
def test_an_old_folder_reports_the_same(reported, name):
    assert (reported / name).read_text() == (GOLDEN / "expected" / name).read_text()
