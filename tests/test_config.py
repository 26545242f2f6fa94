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
    paths = sorted((REPO / "examples").glob("*.yaml"))
    assert paths, f"no examples/*.yaml in {REPO}"
    for path in paths:
        config = load_config(path)
        assert config.strategies, path


def test_engine_args_must_name_a_configured_engine(tmp_path):
    msg = error_of(write(tmp_path, "models: [{synth: tiny}]\nengines: [mainline]\nengine_args:\n  mainlin: [-x]\n"))
    assert "did you mean 'mainline'" in msg


def test_context_too_small_for_the_server_is_a_validateerror_of(tmp_path):
    path = write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\ntools: [llama-bench, llama-server]\n"
                           "bench:\n  prompt_tokens: [512]\n  gen_tokens: [128]\n  ctx: 512\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:8:") and "bench.ctx" in msg
    assert "bench.prompt_tokens 512 + bench.gen_tokens 128 = 640" in msg and "at least 640" in msg
    result = run_cli("validate", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # llama-bench sizes its own context: the same settings are fine without the server
    load_config(write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\ntools: [llama-bench]\n"
                                "bench:\n  prompt_tokens: [512]\n  gen_tokens: [128]\n  ctx: 512\n"))


def test_a_model_file_instead_of_a_sweep_is_a_one_lineerror_of(tmp_path, tiny_model):
    for command in ("run", "plan", "validate"):
        result = run_cli(command, tiny_model)
        assert result.returncode == 2, result.stderr
        assert "a GGUF model; expected a sweep description in YAML" in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    binary = tmp_path / "noise.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert "not text; expected a sweep description" in error_of(binary)


def test_processes_and_until_are_validated_and_not_identity(tmp_path):
    path = write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\n"
                           "bench:\n  processes: 4\n  until: {ci_pct: 3, max_processes: 1}\n")
    msg = error_of(path)
    assert "bench.until.max_processes" in msg
    config = load_config(write(tmp_path, "models:\n  - synth: tiny\nengines: [mainline]\n"
                                         "bench:\n  processes: 4\n  until: {ci_pct: 3, max_minutes: 10}\n"))
    assert config.bench.processes == 4 and config.bench.until.ci_pct == 3
    assert "processes" not in config.bench.identity() and "until" not in config.bench.identity()
