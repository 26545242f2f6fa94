"""bench.yaml validation: every mistake names the file, the line, the key and what is allowed."""

from __future__ import annotations

import pytest

from conftest import REPO, run_cli
from harness.config import load_config
from harness.errors import UserError


def write(tmp_path, text):
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def error_of(path) -> str:
    with pytest.raises(UserError) as info:
        load_config(path)
    return str(info.value)


def test_repository_bench_yaml_is_valid():
    config = load_config(REPO / "bench.yaml")
    assert config.models[0].synth == "tiny"
    assert config.engines[0].name == "mainline"


def test_unknown_key_names_line_and_suggests(tmp_path):
    path = write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\nbench:\n  repetitons: 3\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:5:")
    assert "did you mean 'repetitions'" in msg and "bench.repetitons" in msg
    assert "allowed:" in msg and "prompt_tokens" in msg


def test_bad_value_names_line_key_and_value(tmp_path):
    path = write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\nbench:\n  repetitions: 0\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:5:") and "bench.repetitions" in msg and "(got 0)" in msg


def test_unknown_preset_lists_presets(tmp_path):
    path = write(tmp_path, "engines: [mainline]\nmodels:\n  - synth: tine\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3:") and "did you mean 'tiny'" in msg and "allowed:" in msg


def test_missing_section_and_bad_tool(tmp_path):
    msg = error_of(write(tmp_path, "models:\n  - synth: tiny\ntools: [llama-bnch]\n"))
    assert "missing required key 'engines'" in msg
    assert ":3:" in msg and "tools.0" in msg


def test_model_needs_exactly_one_source(tmp_path):
    msg = error_of(write(tmp_path, "engines: [mainline]\nmodels:\n  - seed: 3\n"))
    assert ":3:" in msg and "exactly one of 'path' or 'synth'" in msg


def test_yaml_syntax_error_and_missing_file(tmp_path):
    msg = error_of(write(tmp_path, "models: [\n  - synth: tiny\n"))
    assert "not valid YAML" in msg
    assert "no such file" in error_of(tmp_path / "nope.yaml")


def test_validate_cli_one_line_no_traceback(tmp_path):
    path = write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\nbench:\n  threds: 2\n")
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "did you mean 'threads'" in result.stderr
    assert run_cli("validate", REPO / "bench.yaml").returncode == 0


def test_examples_are_valid():
    for path in sorted((REPO / "examples").glob("*.yaml")):
        config = load_config(path)
        assert config.strategies, path


def test_engine_args_must_name_a_configured_engine(tmp_path):
    msg = error_of(write(tmp_path, "models: [{synth: tiny}]\nengines: [mainline]\nengine_args:\n  mainlin: [-x]\n"))
    assert "did you mean 'mainline'" in msg
