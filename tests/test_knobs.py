"""Engine knobs as axes of the grid: lists in bench.yaml cross with the strategies' parameters, each value
compiled per engine and tool from the binary's own --help, a value an engine's tool lacks refused at
`validate` (naming the engine, tool and knob), knob values in a configuration's identity, and the memory
prediction following the micro-batch, the context and the cache types."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from conftest import run_cli
from harness.config import BenchSettings, load_config
from harness.errors import UserError
from harness.plan.knob_flags import KnobUnsupported, knob_args, tool_syntax
from harness.knobs import Knobs, knob_grid, varying_knobs
from harness.plan.load_report import engine_settings
from harness.plan.planner import config_id, stable_id

EVERY_KNOB = Knobs(ubatch=256, batch=1024, threads=3, threads_batch=2, flash_attn=True, op_offload=False,
                   load_mode="no-mmap", cache_type_k="q8_0", cache_type_v="q4_0")
CACHE = ["-ctk", "q8_0", "-ctv", "q4_0"]
SIZES = ["-b", "1024", "-ub", "256"]


def test_lists_become_axes_crossed_with_each_other():
    bench = BenchSettings(ubatch=[512, 2048, 4096], threads=4, flash_attn=[True, False])
    grid = knob_grid(bench)
    assert varying_knobs(bench) == ["ubatch", "flash_attn"] and len(grid) == 6
    assert {(k.ubatch, k.flash_attn) for k in grid} == {(u, f) for u in (512, 2048, 4096) for f in (True, False)}
    assert all(k.threads == 4 and k.cache_type_k == "f16" for k in grid)
    assert knob_grid(BenchSettings()) == [Knobs()]


@pytest.mark.parametrize("text, needle", [
    ("ubatch: [512, 0]", "bench.ubatch: give a whole number >= 1, or a list of them"),
    ("threads: []", "bench.threads: give a whole number >= 1"),
    ("load_mode: [mmap, nommap]", "bench.load_mode: give one of mmap, no-mmap, mlock"),
    ("flash_attn: [true, maybe]", "bench.flash_attn: give true or false"),
    ("cache_type_v: [q8_0, q9_0]", "unknown cache type 'q9_0'"),
    ("ubatch: [512, 512]", "a value is listed twice"),
    ("mla: [1, 4]", "bench.mla: give one of 0, 1, 2, 3"),
    ("swa_full: 1", "bench.swa_full: give true or false"),
])
def test_bad_knob_values_name_line_and_key(tmp_path, text, needle):
    path = tmp_path / "bench.yaml"
    path.write_text(f"models: [{{synth: tiny}}]\nengines: [mainline]\nbench:\n  {text}\n")
    with pytest.raises(UserError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:4:") and needle in str(info.value), str(info.value)


def _conf(knobs: Knobs):
    model = SimpleNamespace(identity="synth:tiny:seed0")
    engine = SimpleNamespace(name="mainline-11434.0.0", version="11434.0.0")
    return SimpleNamespace(model=model, engine=engine, tool="llama-bench", strategy="cpu-moe", params={},
                           engine_args=[], knobs=knobs)


def test_knob_values_are_identity_and_earlier_ids_stay():
    bench = BenchSettings(threads=4, ubatch=512, cache_type_k="q8_0")
    (knobs,) = knob_grid(bench)
    # the id moebench gave this configuration before knobs became axes: the whole bench settings as identity
    before = bench.model_dump(exclude={"processes", "until", "threads_batch", "op_offload", "load_mode", "mla",
                                       "swa_full", "attn_max_batch_mib"})
    conf = _conf(knobs)
    assert config_id(bench, conf) == stable_id("synth:tiny:seed0", "mainline-11434.0.0", "11434.0.0",
                                               "llama-bench", "cpu-moe", {}, [], before)
    axis = BenchSettings(threads=4, ubatch=[512, 2048], cache_type_k="q8_0")
    ids = [config_id(axis, _conf(k)) for k in knob_grid(axis)]
    assert ids[0] == config_id(bench, conf) and ids[0] != ids[1]  # each value its own configuration
    assert config_id(bench, _conf(Knobs(threads=4, ubatch=512, cache_type_k="q8_0", op_offload=False))) \
        != config_id(bench, conf)  # a new knob, once set, is part of the identity too


def test_knob_spellings_mainline(mainline_engine):
    server = knob_args(EVERY_KNOB, 3, tool_syntax(mainline_engine, "llama-server"))
    assert server == [*CACHE, "-t", "3", "-tb", "2", *SIZES, "-fa", "on", "--no-op-offload", "-lm", "none"]
    bench = knob_args(replace(EVERY_KNOB, threads_batch=None), 3, tool_syntax(mainline_engine, "llama-bench"))
    assert bench == [*CACHE, "-t", "3", *SIZES, "-fa", "on", "-nopo", "1", "-lm", "none"]
    locked = knob_args(Knobs(load_mode="mlock", op_offload=True), 1, tool_syntax(mainline_engine, "llama-bench"))
    assert locked == ["-ctk", "f16", "-ctv", "f16", "-t", "1", "-nopo", "0", "-lm", "mmap+mlock"]
    assert knob_args(Knobs(swa_full=True), 1, tool_syntax(mainline_engine, "llama-server"))[-1] == "--swa-full"
    assert "--swa-full" not in knob_args(Knobs(swa_full=False), 1, tool_syntax(mainline_engine, "llama-server"))
    assert knob_args(Knobs(swa_full=False), 1, tool_syntax(mainline_engine, "llama-bench"))[-2:] == ["-t", "1"]
    with pytest.raises(KnobUnsupported, match=r"llama-bench cannot set swa_full=true: none of --swa-full"):
        knob_args(Knobs(swa_full=True), 1, tool_syntax(mainline_engine, "llama-bench"))
    for tool in ("llama-bench", "llama-server"):  # mainline has no MLA mode (MLA follows the file)
        with pytest.raises(KnobUnsupported, match=rf"mainline.*{tool} cannot set mla=1: none of -mla"):
            knob_args(Knobs(mla=1), 1, tool_syntax(mainline_engine, tool))
        with pytest.raises(KnobUnsupported, match=rf"{tool} cannot set attn_max_batch_mib=512: none of -amb"):
            knob_args(Knobs(attn_max_batch_mib=512), 1, tool_syntax(mainline_engine, tool))  # ik's flag only


def test_knob_spellings_ik(ik_engine):
    for tool in ("llama-server", "llama-sweep-bench"):
        args = knob_args(EVERY_KNOB, 3, tool_syntax(ik_engine, tool))
        assert args == [*CACHE, "-t", "3", "-tb", "2", *SIZES, "-fa", "on", "-op", "-1,0", "--no-mmap"], tool
    bench = knob_args(replace(EVERY_KNOB, op_offload=None), 3, tool_syntax(ik_engine, "llama-bench"))
    assert bench == [*CACHE, "-tgb", "3,2", *SIZES, "-fa", "1", "-mmp", "0"]  # ik's bench: -fa on would be off
    assert knob_args(Knobs(load_mode="mlock"), 1, tool_syntax(ik_engine, "llama-server"))[-1] == "--mlock"
    with pytest.raises(KnobUnsupported, match=r"ik.*llama-bench cannot set load_mode=mlock: its -mmp"):
        knob_args(Knobs(load_mode="mlock"), 1, tool_syntax(ik_engine, "llama-bench"))
    for tool in ("llama-bench", "llama-server", "llama-sweep-bench"):
        assert knob_args(Knobs(mla=1), 1, tool_syntax(ik_engine, tool))[-2:] == ["-mla", "1"], tool
        assert knob_args(Knobs(attn_max_batch_mib=512), 1, tool_syntax(ik_engine, tool))[-2:] == ["-amb", "512"]


def test_validate_refuses_a_knob_an_engine_tool_lacks(tmp_path, mainline_engine, ik_engine):
    path = tmp_path / "bench.yaml"
    path.write_text("""models: [{synth: tiny}]
engines: [mainline, ik]
tools: [llama-bench, llama-server]
bench:
  threads_batch: [1, 2]
  op_offload: false
  load_mode: [mmap, mlock]
  cache_type_k: q6_0
""")
    result = run_cli("validate", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.removeprefix("moebench: error: ").splitlines()
    expected = [
        (":5: bench.threads_batch:", "mainline-11434.0.0 (mainline) llama-bench cannot set threads_batch=1"),
        (":6: bench.op_offload:", "ik-0.1.5 (ik) llama-bench cannot set op_offload=false"),
        (":7: bench.load_mode:", "ik-0.1.5 (ik) llama-bench cannot set load_mode=mlock"),
        (":8: bench.cache_type_k:", "mainline-11434.0.0 (mainline) llama-server has no KV cache type 'q6_0'"),
    ]
    for where, what in expected:
        assert any(where in line and what in line for line in lines), (where, what, lines)
    assert len(lines) == 4  # each problem once, whatever the number of grid points showing it
    refused = run_cli("run", path, "--out", tmp_path / "out")
    assert refused.returncode == 2 and not (tmp_path / "out" / "default" / "runs.csv").exists()
    path.write_text("models: [{synth: tiny}]\nengines: [mainline]\nbench: {ubatch: [16, 32], threads: [1, 2]}\n")
    ok = run_cli("validate", path)
    assert ok.returncode == 0 and "4 knob combinations (ubatch x threads)" in ok.stdout


def test_memory_follows_ubatch_context_and_cache_types(tmp_path, mainline_engine):
    path = tmp_path / "bench.yaml"
    path.write_text("""models: [{synth: tiny}]
engines: [mainline]
tools: [llama-server]
rpc_rig: true
vram_budget_mib: 18
strategies: [all-gpu]
bench: {prompt_tokens: [64], gen_tokens: [16], ctx: 256, ubatch: [64, 512], cache_type_k: [f16, q8_0]}
""")
    result = run_cli("plan", path, "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["knobs"]["ubatch"], r["knobs"]["cache_type_k"]): r for r in json.loads(result.stdout)}
    small, big = rows[64, "f16"], rows[512, "f16"]
    # ub 512 is capped at the 256-token context: 4x the activations of ub 64 (flash attention: no score matrix;
    # the tensors of one micro-batch are all n_tokens wide, so the reserved graph scales with it)
    assert big["memory"]["compute_mib"]["accel0"] == pytest.approx(
        4 * small["memory"]["compute_mib"]["accel0"], rel=0.05)
    assert (small["status"], big["status"]) == ("planned", "skipped: predicted-oom")  # the micro-batch decides
    assert rows[64, "q8_0"]["memory"]["kv_mib"]["accel0"] < small["memory"]["kv_mib"]["accel0"]
    assert "-ub" in small["knob_args"] and small["knob_args"][small["knob_args"].index("-ub") + 1] == "64"
    path.write_text(path.read_text().replace("ctx: 256", "ctx: 4096").replace("ubatch: [64, 512]", "ubatch: 64"))
    longer = {r["knobs"]["cache_type_k"]: r for r in json.loads(run_cli("plan", path, "--json").stdout)}
    assert longer["f16"]["memory"]["kv_mib"]["accel0"] == pytest.approx(16 * small["memory"]["kv_mib"]["accel0"])
    assert longer["f16"]["status"] == "skipped: predicted-oom"  # the same ubatch, a longer context


def test_layout_offsets_of_an_unwritten_preset_match_the_written_file(tiny_model):
    from harness.models import inspect_model, inspect_preset
    from harness.plan.planner import _with_layout_offsets

    real = inspect_model(tiny_model).tensors
    start = min(r.offset for r in real)
    planned = _with_layout_offsets(inspect_preset("tiny")).tensors
    assert [(r.name, r.offset - start) for r in real] == [(r.name, r.offset) for r in planned]


def test_engine_settings_from_both_engines_logs():
    mainline = """0.00.018.845 I cmn  common_param: system_info: n_threads = 1 (n_threads_batch = 2) / 2 | CPU :
0.00.034.075 I load_tensors: loading model tensors, this can take a while... (load_mode = none)
0.00.035.053 I llama_context: n_batch               = 64
0.00.035.054 I llama_context: n_ubatch              = 32
0.00.035.055 I llama_context: flash_attn            = enabled"""
    assert engine_settings(mainline) == {"n_threads": "1", "n_threads_batch": "2", "load_mode": "none",
                                         "n_batch": "64", "n_ubatch": "32", "flash_attn": "enabled"}
    ik = "llama_init_from_model: n_ctx         = 256\nllama_init_from_model: n_ubatch      = 16\n" \
         "llama_init_from_model: flash_attn    = 1\n"
    assert engine_settings(ik) == {"n_ctx": "256", "n_ubatch": "16", "flash_attn": "1"}
    ik_server = 'INFO [                    main] system info | tid="1" timestamp=1 n_threads=2 n_threads_batch=-1 ' \
                'total_threads=2 system_info="AVX = 1 | "'
    assert engine_settings(ik_server) == {"n_threads": "2", "n_threads_batch": "2"}


def test_resuming_a_folder_written_before_the_knob_columns(tmp_path):
    """Its header is widened once (rows unchanged, the knob columns empty), so that appended rows line up."""
    import csv

    from harness.results.record import COLUMNS
    from harness.results.store import ResultsStore

    old = [c for c in COLUMNS if c not in ("ubatch", "batch", "threads_batch", "flash_attn", "op_offload",
                                           "load_mode", "cache_type_k", "cache_type_v")]
    folder = tmp_path / "sweep"
    folder.mkdir()
    with open(folder / "runs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=old, lineterminator="\n")
        writer.writeheader()
        writer.writerow({"schema_version": 2, "config_id": "a", "threads": 2, "tps_mean": 10.0})
    store = ResultsStore(folder)
    store.append({"config_id": "b", "threads": 1, "ubatch": 2048, "load_mode": "no-mmap", "tps_mean": 12.0})
    with open(folder / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["config_id"], r["threads"], r["ubatch"], r["load_mode"], r["tps_mean"]) for r in rows] \
        == [("a", "2", "", "", "10.0"), ("b", "1", "2048", "no-mmap", "12.0")]
    assert [(r["config_id"], r["ubatch"], r["load_mode"]) for r in store.rows()] \
        == [("a", None, None), ("b", 2048, "no-mmap")]


def _planned(path) -> list[dict]:
    result = run_cli("plan", path, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _planned_ik_deepseek(tmp_path, knob: str, values: str) -> dict:
    """ik's plan of tiny-deepseek on the RPC rig without flash attention, one row per value of `knob`."""
    path = tmp_path / "bench.yaml"
    path.write_text(f"""models: [{{synth: tiny-deepseek}}]
engines: [ik]
tools: [llama-server]
rpc_rig: true
strategies: [all-gpu]
bench: {{prompt_tokens: [64], gen_tokens: [16], ctx: 4096, flash_attn: false, {knob}: {values}}}
""")
    return {r["knobs"][knob]: r for r in _planned(path)}


def test_mla_knob_reaches_the_memory_prediction(tmp_path, ik_engine):
    """ik's `-mla` as a knob: each value on the command line and in the KV cache predicted (the sizes themselves are checked against the engines in test_cache_reality; mainline's refusal of
    mla is `test_knob_spellings_mainline`'s)."""
    ik = _planned_ik_deepseek(tmp_path, "mla", "[1, 3]")
    assert ["-mla", "1"] == ik[1]["knob_args"][-2:] and ["-mla", "3"] == ik[3]["knob_args"][-2:]
    # mode 1 without flash attention caches the latent in -ctk and a transposed V beside it; mode 3 the latent only
    kv = {mode: sum(row["memory"]["kv_mib"].values()) for mode, row in ik.items()}  # ik on RPC: on the CPU
    assert kv[1] > kv[3] > 0, kv


def test_amb_knob_reaches_the_compute_prediction(tmp_path, ik_engine):
    """ik's `-amb` as a knob: on the command line and in the compute buffers predicted (smaller when ik computes
    the attention in steps; the sizes themselves are test_compute_reality's)."""
    ik = _planned_ik_deepseek(tmp_path, "attn_max_batch_mib", "[1, 1024]")
    assert ["-amb", "1"] == ik[1]["knob_args"][-2:] and ["-amb", "1024"] == ik[1024]["knob_args"][-2:]
    compute = {amb: sum(row["memory"]["compute_mib"].values()) for amb, row in ik.items()}
    assert 0 < compute[1] < compute[1024], compute


def test_swa_full_knob_reaches_the_memory_prediction(tmp_path, mainline_engine):
    """mainline llama-server's `--swa-full` as a knob: on the command line when on, and the sliding-window
    layers' cache grows to the whole context."""
    path = tmp_path / "bench.yaml"
    path.write_text("""models: [{synth: tiny-gpt-oss}]
engines: [mainline]
tools: [llama-server]
rpc_rig: true
strategies: [all-gpu]
bench: {prompt_tokens: [64], gen_tokens: [16], ctx: 4096, swa_full: [false, true]}
""")
    swa = {r["knobs"]["swa_full"]: r for r in _planned(path)}
    assert swa[True]["knob_args"][-1] == "--swa-full" and "--swa-full" not in swa[False]["knob_args"]
    assert swa[True]["memory"]["kv_mib"]["accel0"] > swa[False]["memory"]["kv_mib"]["accel0"]
