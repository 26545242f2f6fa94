"""`moebench strategies`, `flags` and `plan` from the command line, and a third-party plugin installed for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO, run_cli

RPC = "RPC0[127.0.0.1:50052]"  # named, never contacted: flags and plan only compile


def test_example_plugin_installs_and_runs(tmp_path, tiny_model, mainline_engine):
    source = tmp_path / "plugin"  # a copy: setuptools writes build/ into the project it installs
    shutil.copytree(REPO / "examples" / "plugin", source)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, timeout=300)
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("strategies", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "interleaved-experts" in listed.stdout and "cpu-moe" in listed.stdout
    flags = run_cli("flags", tiny_model, "interleaved-experts", "every=2", "--device", RPC, "--json", env=env)
    assert flags.returncode == 0, flags.stderr
    out = json.loads(flags.stdout)
    ot = out["args"][out["args"].index("-ot") + 1]
    assert ot == r"^blk\.(?:0|2|4|6)\.(?:ffn_down_exps\.weight|ffn_gate_exps\.weight|ffn_up_exps\.weight)$=CPU"
    assert "interleaved-experts" not in run_cli("strategies").stdout  # not installed outside that folder


def test_flags_json_and_plain(tiny_model, mainline_engine):
    result = run_cli("flags", tiny_model, "first-n-experts", "n=3", "--device", RPC, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["args"] == ["--rpc", "127.0.0.1:50052", "-dev", "RPC0", "-ngl", "9", "-ncmoe", "3", "--fit", "off"]
    weights = out["predicted_weights_bytes"]
    assert set(weights) == {"CPU", RPC} and sum(weights.values()) == 16307200  # every byte of the tiny model
    buffers = out["predicted_model_buffer_bytes"]
    assert buffers[RPC] == weights[RPC] and buffers["CPU"] >= weights["CPU"]  # a mapped CPU buffer is a span
    plain = run_cli("flags", tiny_model, "cpu-moe", "--tool", "llama-bench", "--device", RPC)
    assert plain.stdout.strip() == "--rpc 127.0.0.1:50052 -dev RPC0 -ngl 9 -ncmoe 8"


def test_flags_user_mistakes_are_one_line(tiny_model, mainline_engine):
    for args, needle in (((tiny_model, "firstn-experts", "n=1"), "did you mean 'first-n-experts'"),
                         ((tiny_model, "first-n-experts", "n=99", "--device", RPC), "only 8 layers with experts"),
                         ((tiny_model, "first-n-experts", "n=1"), "lists no accelerator"),
                         ((tiny_model, "first-n-experts", "n"), "must look like name=value")):
        result = run_cli("flags", *args)
        assert result.returncode == 2 and needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_plan_marks_predicted_oom(tmp_path, mainline_engine, ik_engine):
    config = tmp_path / "bench.yaml"
    config.write_text(f"""
models:
  - synth: tiny
engines: [mainline, ik]
tools: [llama-bench, llama-server]
devices: ["{RPC}"]
vram_budget_mib: 16   # all-gpu: 15.0 MiB of weights, the KV cache and compute buffers of a 64-token test
bench: {{ctx: 256, prompt_tokens: [64], gen_tokens: [16]}}
strategies:
  - all-gpu
  - name: first-n-experts
    params: {{n: "0..8 step 4"}}
  - name: gpu-layers
    params: {{k: [2, 9]}}
""")
    result = run_cli("plan", config, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == (1 + 3 + 2) * 2 * 2
    by = {(r["strategy"], json.dumps(r["params"]), r["engine"].split("-")[0], r["tool"]): r for r in rows}
    all_gpu = by[("all-gpu", "{}", "mainline", "llama-bench")]
    assert all_gpu["status"] == "skipped: predicted-oom" and all_gpu["memory"]["fits"] is False
    assert by[("first-n-experts", '{"n": 8}', "ik", "llama-server")]["status"] == "planned"
    error = by[("gpu-layers", '{"k": 9}', "mainline", "llama-bench")]["error"]
    assert error.startswith("cannot place: strategy gpu-layers")
    assert "-ot" in by[("first-n-experts", '{"n": 4}', "ik", "llama-server")]["args"]
    table = run_cli("plan", config)
    assert table.returncode == 0 and "NO" in table.stdout


def test_engine_fit_passes_its_margin_to_ik(tiny_model, ik_engine):
    """ik's --fit keeps 1024 MiB free unless told otherwise: engine-fit's margin must reach it."""
    server = run_cli("flags", tiny_model, "engine-fit", "margin_mib=512", "--engine", "ik", "--tool", "llama-server",
                     "--device", RPC)
    assert server.returncode == 0, server.stderr
    assert server.stdout.split()[-3:] == ["--fit", "--fit-margin", "512"]
    bench = run_cli("flags", tiny_model, "engine-fit", "margin_mib=512", "--engine", "ik", "--tool", "llama-bench",
                    "--device", RPC)
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.split()[-4:] == ["--fit", "1", "--fit-margin", "512"]


def test_a_closed_pipe_ends_the_command_quietly():
    """`moebench strategies | head -0`: the reader is gone before anything is written; no traceback, exit 141."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "harness.cli", "strategies"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 141
