"""`moebench tune`: the stopping rule, the VRAM budget of the space, and a whole tuning session on the RPC rig
with the real engine, where some tried configurations crash (a V cache quantized without flash attention: the
engine refuses to create its context) and become failed rows while the search goes on."""

from __future__ import annotations

import csv
import json

from harness.tune.search import plan_space, stop_reason
from harness.tune.settings import TuneSettings, score
from harness.units import MIB
from tests.conftest import run_cli


def test_stopping_rule():
    assert stop_reason(100.0, [90.0, 99.9], runs=3, max_runs=10).startswith("the best measured")
    assert stop_reason(100.0, [90.0, 100.5], runs=3, max_runs=10) == ""           # one could still be better
    assert stop_reason(100.0, [90.0, None], runs=3, max_runs=10) == ""            # unpredictable: must measure
    assert stop_reason(100.0, [90.0, 120.0], runs=10, max_runs=10).startswith("the run budget")
    assert stop_reason(100.0, [], runs=4, max_runs=10) == "every feasible point was measured"
    assert stop_reason(None, [90.0], runs=2, max_runs=10) == ""                   # nothing measured yet
    assert stop_reason(float("nan"), [90.0], runs=2, max_runs=10) == ""           # one process: no interval


def test_balanced_score_is_the_geometric_mean_of_normalized_speeds():
    assert score({"pp": 500.0, "tg": 50.0}, "balanced", {"pp": 1000.0, "tg": 50.0}) == (0.5 * 1.0) ** 0.5
    assert score({"pp": 500.0, "tg": 50.0}, "tg", {}) == 50.0
    assert score({"pp": 500.0}, "balanced", {"pp": 1000.0, "tg": 50.0}) is None


def test_space_keeps_only_points_within_the_budget(mainline_engine, tmp_path):
    settings = TuneSettings({"synth": "tiny"}, {"name": "mainline"}, True, None, vram_budget_mib=20.0,
                            space=("first-n-experts", "gpu-layers"), out=tmp_path)
    candidates, planned = plan_space(settings)
    assert 0 < len(candidates) < planned
    assert all(c.conf.memory.vram_bytes <= 20 * MIB for c in candidates)
    labels = {c.label for c in candidates}
    assert "all-gpu" not in labels and "gpu-layers(k=0)" in labels   # all-gpu needs ~28 MiB here
    assert all(c.workloads["tg"] is not None for c in candidates)


def test_tune_on_the_rig_survives_crashing_configurations(rig_calibration, tmp_path):
    env, _ = rig_calibration
    out = tmp_path / "tune"
    result = run_cli("tune", "synth:tiny", "--rpc-rig", "--vram-budget-mib", "68", "--objective", "tg",
                     "--space", "first-n-experts", "--knob", "cache_type_v=f16,q4_0", "--knob", "flash_attn=off",
                     "--max-runs", "6", "--processes", "1", "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads((out / "tune.json").read_text())
    assert len(answer["runs"]) <= 6 and answer["stopped_because"]
    failed = [r for r in answer["runs"] if r["failed"]]
    assert failed, "a q4_0 V cache without flash attention should have been tried and failed"
    best = answer["best"]
    assert best["knobs"].get("cache_type_v", "f16") == "f16" and best["measured"]["tg"]["mean"] > 0
    assert set(best["commands"]) == {"llama-server", "llama-bench"}
    assert "-ctv" in best["commands"]["llama-bench"][0] or "--cache-type-v" in " ".join(best["commands"]["llama-bench"][0])
    assert set(answer["baselines"]) == {"engine-fit", "cpu-moe"}
    assert "engine-fit" in best["gain_over"]
    text = (out / "tune.md").read_text()
    assert "llama-server" in text and "## Evidence" in text
    with open(out / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert any(r["status"] == "failed" for r in rows) and any(r["status"] == "ok" for r in rows)
    assert answer["results"] == str(out)
    report = run_cli("report", out)
    assert report.returncode == 0, report.stderr[-2000:]
    post = run_cli("post", out)  # issue 20: tune's answer as a paste-ready block
    assert post.returncode == 0, post.stderr[-2000:]
    assert "moebench tune's answer for tg" in post.stdout and "`--cpu-moe`" in post.stdout


def test_tune_finds_its_device_and_budget_and_serves_at_its_context(rig_calibration, mainline_engine, tmp_path):
    """Issue 20: `tune MODEL --ctx 16384` with no device and no budget: the engine lists no accelerator here, so
    the RPC rig, said so; the budget is its free memory less --fit's margin; the answer's llama-server line
    carries -c 16384, starts as printed (ports filled in), serves, and the engine's own KV and compute buffers on
    the accelerator at that context fit the budget."""
    from harness.engines.rpc import RpcServer
    from harness.plan.load_report import parse_report
    from harness.tools.server_process import LlamaServer

    env, _ = rig_calibration
    out = tmp_path / "tune"
    result = run_cli("tune", "synth:tiny", "--ctx", "16384", "--space", "first-n-experts", "--max-runs", "3",
                     "--processes", "1", "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads((out / "tune.json").read_text())
    assert answer["ctx"] == 16384 and answer["device"] == "rpc-rig"
    assert "the RPC rig: the engine lists no accelerator" in answer["where"]
    assert "less --fit's 1024 MiB margin" in answer["where"] and answer["vram_budget_mib"] > 1024
    argv = answer["best"]["commands"]["llama-server"][0]
    assert argv[argv.index("-c") + 1] == "16384"
    skip = {argv.index(flag) + i for flag in ("-m", "--host", "--port") for i in (0, 1)}
    model = argv[argv.index("-m") + 1]
    with RpcServer(mainline_engine, threads=1) as rpc:
        args = [a.replace("127.0.0.1:RPC_PORT", rpc.endpoint) for i, a in enumerate(argv[1:], 1) if i not in skip]
        log = tmp_path / "server.log"
        with LlamaServer(mainline_engine.tool("llama-server"), model, args, log_path=log) as server:
            assert server.complete("hello", 4).gen_tokens > 0
    report = parse_report(log.read_text())
    on_accelerator = sum(b for part in (report.model_bytes_by_device, report.state_bytes_by_device,
                                        report.compute_bytes_by_device)
                         for device, b in part.items() if device.startswith("RPC"))
    assert report.kv_bytes_by_device and on_accelerator <= answer["vram_budget_mib"] * MIB
    kv_cells = sum(report.kv_bytes_by_device.values())
    assert kv_cells >= 16384 * 8 * 2 * 2 * 64 * 2  # 8 layers x K and V x 2 KV heads x 64 x f16 at 16384 tokens
