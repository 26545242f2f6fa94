"""The preloaded command line (tests/preloaded_cli.py) stands for a cold one: the same exit status, stdout,
stderr and files; and the cold paths (`python -m harness.cli`, the installed `moebench` script) still work."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_cold_cli

CASES = [
    ("strategies",),  # a listing on stdout, status 0
    ("no-such-command",),  # argparse's usage error: status 2, stderr only
    ("validate", "no-such-bench.yaml"),  # a UserError: one line on stderr
    ("--version",),  # argparse's SystemExit(0) with text
]


@pytest.mark.parametrize("argv", CASES, ids=lambda argv: argv[0])
def test_a_forked_command_line_answers_as_a_cold_one(argv, tmp_path):
    forked, cold = run_cli(*argv, cwd=tmp_path), run_cold_cli(*argv, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert forked.stdout or forked.stderr


def test_a_forked_command_line_writes_its_files_in_its_folder(tmp_path):
    result = run_cli("synth", "model.gguf", "--preset", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.gguf").stat().st_size > 16_000_000
    assert not (REPO / "model.gguf").exists()


def test_a_forked_command_line_sees_the_environment_it_is_given(tmp_path):
    """MOEBENCH_CACHE moves the cache: `engines list` in an empty cache finds none of the cache's engines, the
    same as a cold process told so (the server's own environment has the real cache)."""
    result = run_cli("engines", "list", "--json", env={"MOEBENCH_CACHE": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr
    cold = run_cold_cli("engines", "list", "--json", env={"MOEBENCH_CACHE": str(tmp_path / "empty")})
    assert result.stdout == cold.stdout


def test_the_installed_script_runs():
    script = shutil.which("moebench", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("moebench is not installed in this interpreter's environment")
    result = subprocess.run([script, "strategies"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "cpu-moe" in result.stdout
