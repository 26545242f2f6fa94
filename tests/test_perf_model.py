"""The performance model (`harness.perf`): workloads, prediction and roofline against values computed by hand for
the tiny model, the fit recovering known constants, the engines' graph-split lines, and calibration, row
columns, `predict` and `explain` end to end with the real engine on the RPC rig."""

from __future__ import annotations

import csv
import json
import math

import pytest

from harness.models import inspect_preset
from harness.perf.graph import crossings, graph_ops, run_devices, segments
from harness.perf.fit import fit_constants
from harness.perf.model import Constants, Peaks, predict, roofline_tps
from harness.perf.workload import Layout, ModelledTest, workload
from harness.plan.load_report import parse_report
from strategies import get_strategy
from tests.conftest import run_cli

Q8 = 34 / 32     # bytes per Q8_0 weight
F32 = 4


@pytest.fixture(scope="module")
def tiny():
    return inspect_preset("tiny")


def _layout(model, strategy: str, **params) -> Layout:
    return Layout(get_strategy(strategy).placement(model, params))


def _tiny_layer_active_bytes() -> float:
    """One tiny layer, read by one token, from the preset's shapes (n_embd 256, 4 heads of 64, 2 KV heads, 16
    experts of 128, 4 used; Q8_0 matrices, F32 norms and router)."""
    q = o = 256 * 256 * Q8
    k = v = 256 * 128 * Q8
    norms = (256 + 256 + 64 + 64) * F32            # attn_norm, ffn_norm, q_norm, k_norm
    router = 256 * 16 * F32
    experts = 3 * 16 * 128 * 256 * Q8 * 4 / 16     # gate, up, down; 4 of 16 experts
    return q + k + v + o + norms + router + experts


def test_generation_bytes_per_device_by_hand(tiny):
    w = workload(tiny, _layout(tiny, "all-gpu"), ModelledTest("tg", 128))
    kv_per_token = 8 * 2 * (2 * 64 * 2) * 64       # 8 layers, K+V, 2 heads x 64 f16, 64 tokens of context on average
    accel = 8 * _tiny_layer_active_bytes() + 2048 * 256 * Q8 + 256 * F32  # + output, output_norm
    assert w.bytes_by_device["accel0"] / 128 == pytest.approx(accel)
    assert w.kv_bytes_by_device == {"accel0": pytest.approx(kv_per_token * 128)}
    assert w.bytes_by_device["cpu"] / 128 == pytest.approx(256 * Q8)  # one row of token_embd
    assert (w.segments, w.crossings / 128) == (2, 2)  # embedding on the CPU; logits back


def test_experts_on_the_cpu_cross_twice_per_layer(tiny):
    w = workload(tiny, _layout(tiny, "cpu-moe"), ModelledTest("tg", 16))
    assert w.segments == 18 and w.crossings == 18 * 16 and w.detour_passes == 16
    assert workload(tiny, _layout(tiny, "gpu-layers", k=4), ModelledTest("tg", 16)).detour_passes == 0
    experts = 3 * 16 * 128 * 256 * Q8 * 4 / 16 * 8
    assert w.bytes_by_device["cpu"] / 16 == pytest.approx(experts + 256 * Q8)
    first = workload(tiny, _layout(tiny, "first-n-experts", n=2), ModelledTest("tg", 16))
    last = workload(tiny, _layout(tiny, "last-n-experts", n=2), ModelledTest("tg", 16))
    assert first.crossings == last.crossings and first.bytes_by_device == pytest.approx(last.bytes_by_device)


def test_kv_on_the_accelerator_with_weights_on_the_cpu_bounces(tiny):
    """Observed with mainline on the rig: a qwen3moe layer whose weights are in RAM and cache on the accelerator
    is 10 segments (see harness.perf.graph)."""
    layout = _layout(tiny, "last-n-layers-cpu", n=2)
    assert segments(run_devices(graph_ops(tiny, layout.placement), "accel0")) == 2 + 2 * 10
    ik_like = Layout(layout.placement, "ik", kv_devices=("cpu",) * 8)
    assert segments(run_devices(graph_ops(tiny, ik_like.placement, ik_like.kv_devices), "accel0")) != 22


def test_prompt_arithmetic_and_op_offload_by_hand(tiny):
    layout = _layout(tiny, "cpu-moe")
    w = workload(tiny, layout, ModelledTest("pp", 512, ubatch=256))
    assert w.passes == 2 and w.offload_bytes == 0      # no offload to an RPC device
    expert_flops = 2 * 3 * 16 * 128 * 256 * 4 / 16 * 8 * 512
    assert w.flops_by_device["cpu"] == pytest.approx(expert_flops)
    offloaded = workload(tiny, Layout(layout.placement, offload=True), ModelledTest("pp", 512, ubatch=256))
    assert "cpu" not in offloaded.flops_by_device or offloaded.flops_by_device["cpu"] == 0
    touched = 1 - (1 - 4 / 16) ** 256
    assert offloaded.offload_bytes == pytest.approx(2 * 8 * 3 * 16 * 128 * 256 * Q8 * touched)
    assert offloaded.segments == 2                      # the experts run on the accelerator
    ik = workload(tiny, Layout(layout.placement, "ik", offload=True), ModelledTest("pp", 512, ubatch=128))
    assert ik.offload_bytes > 0 and "cpu" not in ik.flops_by_device      # 128 x 4 >= 32 x 16
    ik_dense_only = workload(tiny, Layout(layout.placement, "ik", offload=True), ModelledTest("pp", 512, ubatch=64))
    assert ik_dense_only.offload_bytes == 0 and ik_dense_only.segments == 18  # 64 x 4 < 32 x 16: experts stay
    ik_small = workload(tiny, Layout(layout.placement, "ik", offload=True), ModelledTest("pp", 64, ubatch=16))
    assert ik_small.offload_bytes == 0                  # 16 tokens: below 32 for both engines


def test_prediction_and_roofline_by_hand(tiny):
    w = workload(tiny, _layout(tiny, "cpu-moe"), ModelledTest("tg", 100))
    constants = Constants(tg={"crossing_s": 1e-4, "cpu_s_per_byte": 1e-9, "accel_s_per_byte": 2e-10,
                              "kv_s_per_byte": 3e-9}, pp={}, bus_s_per_byte=1e-9)
    cpu, accel, kv = w.bytes_by_device["cpu"], w.bytes_by_device["accel0"], w.kv_bytes_by_device["accel0"]
    seconds = w.crossings * 1e-4 + cpu * 1e-9 + accel * 2e-10 + kv * 3e-9 + w.bus_bytes * 1e-9
    assert predict(w, constants).tps == pytest.approx(100 / seconds)
    assert predict(w, constants).shares()["crossing_s"] == pytest.approx(w.crossings * 1e-4 / seconds)
    peaks = Peaks(cpu_bytes_s=20e9, accel_bytes_s=1e12, bus_bytes_s=25e9)
    assert roofline_tps(w, peaks) == pytest.approx(100 / (cpu / 20e9 + (accel + kv) / 1e12 + w.bus_bytes / 25e9))
    assert roofline_tps(workload(tiny, _layout(tiny, "cpu-moe"), ModelledTest("pp", 64)), peaks) is None


def test_fit_recovers_known_constants(tiny):
    true = Constants(tg={"crossing_s": 5e-4, "detour_s": 9e-4, "cpu_s_per_byte": 3e-10, "accel_s_per_byte": 1e-10,
                         "kv_s_per_byte": 6e-10},
                     pp={"pass_s": 0.01, "crossing_s": 2e-3, "cpu_s_per_flop": 4e-11, "accel_s_per_flop": 1e-11},
                     bus_s_per_byte=1e-9)
    samples = []
    for strategy, params in [("all-gpu", {}), ("cpu-moe", {}), ("gpu-layers", {"k": 0}), ("gpu-layers", {"k": 4}),
                             ("first-n-experts", {"n": 4}), ("last-n-layers-cpu", {"n": 2})]:
        for test in (ModelledTest("tg", 128), ModelledTest("tg", 128, depth=2048), ModelledTest("pp", 512), ModelledTest("pp", 1536, depth=512)):
            w = workload(tiny, _layout(tiny, strategy, **params), test)
            samples.append((strategy, w, predict(w, true).tps))
    fit = fit_constants(samples, bus_s_per_byte=1e-9)
    for kind in ("tg", "pp"):
        for name, value in true.for_kind(kind).items():
            assert fit.constants.for_kind(kind)[name] == pytest.approx(value, rel=1e-6), (kind, name)
    assert max(abs(r["error_pct"]) for r in fit.residuals) < 1e-6


def test_graph_split_lines_of_both_engines():
    mainline = ("llama_model_loader: loaded meta data with 30 key-value pairs\nload_tensors:   CPU_Mapped model "
                "buffer size =    15.00 MiB\nllama_context: constructing llama_context\n"
                "sched_reserve: graph: nodes = 449, splits = 18, input objects = 4, input tensors = 9\n")
    ik = ("llama_model_loader: loaded meta data with 30 key-value pairs\nllm_load_tensors:        CPU buffer size "
          "=    15.00 MiB\nllama_init_from_model: n_ctx      = 256\nllama_init_from_model: graph nodes  = 301\n"
          "llama_init_from_model: graph splits = 22\n")
    assert parse_report(mainline).graph_splits == 18
    assert parse_report(ik).graph_splits == 22
    assert parse_report(mainline.replace("splits = 18", "")).graph_splits is None


def test_calibrate_predict_and_explain_on_the_rig(rig_calibration, tmp_path):
    env, cal = rig_calibration
    fitted = cal["tools"]["llama-bench"]
    assert cal["device"] == "rpc-rig" and cal["peaks"]["cpu_bytes_s"] > 1e8 and cal["peaks"]["bus_bytes_s"] > 1e7
    assert all(v >= 0 for kind in ("tg", "pp") for v in fitted["constants"][kind].values())
    assert len(fitted["residuals"]) == 2 * 5                       # quick: 2 tests x 5 placements
    assert any(v > 0 for v in fitted["constants"]["tg"].values())

    predicted = run_cli("predict", "synth:tiny", "first-n-experts", "n=2", "--rpc-rig", "--json", env=env)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout)
    assert answer["graph_splits"] == 6 and answer["calibration"]
    assert all(t["predicted_tps"] > 0 for t in answer["tests"])
    assert answer["tests"][1]["roofline_tps"] > answer["tests"][1]["predicted_tps"]

    (tmp_path / "bench.yaml").write_text(
        "name: explained\nmodels: [{synth: tiny}]\nengines: [mainline]\nrpc_rig: true\n"
        "strategies: [{name: first-n-experts, params: {n: 2}}, {name: last-n-experts, params: {n: 2}}]\n"
        "bench: {prompt_tokens: [512], gen_tokens: [128], repetitions: 1, processes: 2}\n"
        "telemetry: {enabled: false}\n")
    run = run_cli("run", tmp_path / "bench.yaml", "--out", tmp_path / "results", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(tmp_path / "results" / "explained" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        kind = row["test"][:2]
        assert row["graph_splits"] == row["predicted_graph_splits"] == "6"
        assert float(row[f"predicted_{kind}_tps"]) > 0
        if kind == "tg":
            roofline, efficiency = float(row["roofline_tg_tps"]), float(row["efficiency_pct"])
            assert math.isclose(efficiency, 100 * float(row["tps_mean"]) / roofline, abs_tol=0.006)  # 2 decimals
    explained = run_cli("explain", tmp_path / "results" / "explained", env=env)
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert "first-n-experts(n=2)" in explained.stdout and "last-n-experts(n=2)" in explained.stdout
    assert "the model sees no difference" in explained.stdout  # same work and crossings on this model

    # what the run stored of its plan: every configuration of the rows, with the predictions the rows carry
    folder = tmp_path / "results" / "explained"
    stored = json.loads((folder / "configurations.json").read_text())["configurations"]
    assert {row["config_id"] for row in rows} == set(stored)
    for row in rows:
        test = stored[row["config_id"]]["tests"][f"{row['test']}@d0"]
        assert round(test["predicted_tps"], 3) == float(row[f"predicted_{row['test'][:2]}_tps"])
        assert test["predicted_graph_splits"] == 6
    # explain reads it: with the sweep's engine and model unknown to a planner, the same explanation
    meta = json.loads((folder / "meta.json").read_text())
    meta["config"]["engines"] = [{"name": "no-such-engine"}]
    meta["config"]["models"] = [{"path": str(tmp_path / "gone.gguf")}]
    (folder / "meta.json").write_text(json.dumps(meta))
    again = run_cli("explain", folder, env=env)
    assert again.returncode == 0 and again.stdout == explained.stdout, again.stderr[-2000:]


def test_explain_without_predictions_says_why():
    """A sweep whose engines have no calibration: a table would be empty; the section says what to run."""
    import pandas as pd

    from harness.analysis.explain import Explained, explain_markdown

    rows = pd.DataFrame([{"engine": "ik-0.1.5", "tool": "llama-server", "model": "synth:tiny", "placement": "cpu-moe",
                          "test": "tg128", "kind": "tg", "measured_tps": 100.0, "ci_low": 90.0, "ci_high": 110.0}])
    text = explain_markdown(Explained(rows, problem="no calibration for this sweep's engines and devices"))
    assert "no calibration" in text and "| engine |" not in text


def test_explain_names_the_term_that_differs_most():
    from harness.analysis.explain import _pair

    common = {"ci_low": 1.0, "ci_high": 2.0, "predicted_tps": 1.0}
    a = {"placement": "all-gpu", "measured_tps": 600.0, "crossings_per_pass": 2,
         "terms_s": {"device crossings": 1e-4, "reading weights on the CPU": 0.0}, **common}
    b = {"placement": "cpu-moe", "measured_tps": 140.0, "crossings_per_pass": 18,
         "terms_s": {"device crossings": 6e-3, "reading weights on the CPU": 4e-4}, **common}
    why = _pair(a, b, "e", "t", "m", "tg128")["why"]
    assert why.startswith("cpu-moe spends more time on device crossings (94%")


def test_an_engine_by_folder_is_named_after_its_build(mainline_engine):
    """`--engine path/to/build/bin` names the engine after the build folder, not `bin` (the calibrations and
    rows carry that name)."""
    result = run_cli("predict", "synth:tiny", "cpu-moe", "--rpc-rig", "--engine", mainline_engine.bin_dir, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == mainline_engine.bin_dir.parent.name
    missing = run_cli("predict", "no-such-model.gguf", "cpu-moe", "--rpc-rig")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
