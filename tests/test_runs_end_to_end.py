"""Real engines on the real (synthetic) tiny model: llama-bench and llama-server from both engines, and the
main job (`moebench run bench.yaml`) writing results."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import REPO, run_cli
from harness.config import BenchSettings
from harness.tools.llama_bench import bench_argv, parse_bench_json
from harness.tools.server_process import LlamaServer
from harness import procs
from harness.results.reader import by_device, read_devices
from harness.results.schema import SCHEMA_VERSION
from harness.units import MIB


def _run_sweep(tmp_path, bench_yaml: str) -> list[dict]:
    """`moebench run` of this bench.yaml into tmp_path/out (it must succeed); the rows it wrote."""
    config = tmp_path / "bench.yaml"
    config.write_text(bench_yaml)
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader((tmp_path / "out" / "default" / "runs.csv").open()))


def test_llama_bench_measures_pp_and_tg(engine, tiny_model, tmp_path):
    settings = BenchSettings(prompt_tokens=[64], gen_tokens=[16], repetitions=2)
    argv = bench_argv(engine.tool("llama-bench"), tiny_model, settings, ["-t", "2"])
    out = tmp_path / "bench.json"
    result = procs.run(argv, timeout_s=300, log_path=tmp_path / "bench.log", stdout_path=out)
    assert result.ok, result.output_tail
    tests = {t.name: t for t in parse_bench_json(out.read_text())}
    assert set(tests) == {"pp64", "tg16"}
    for test in tests.values():
        assert test.tps_mean > 0  # positive; how fast depends on what else the machine runs
        assert len(test.tps_samples) == 2 and all(s > 0 for s in test.tps_samples)


def test_llama_server_completion_timings(engine, tiny_model, tmp_path):
    with LlamaServer(engine.tool("llama-server"), tiny_model, ["-t", "2", "-c", "512"],
                     log_path=tmp_path / "server.log") as server:
        timings = server.complete("The quick brown fox jumps over the lazy dog. " * 4, n_predict=12)
        pid_port = server.port
    assert timings.gen_tokens == 12          # ignore_eos: exactly the tokens asked for
    assert timings.prompt_tokens > 10
    assert timings.prompt_tps > 0 and timings.gen_tps > 0
    assert 0 < timings.ttft_ms < 10_000  # streamed: time to the first token as a client sees it
    assert not procs.live_groups()           # stopped: nothing left running
    assert f"{pid_port}" in " ".join(server.argv)


def test_demo_sweep_writes_real_results(mainline_engine, tmp_path):
    """What `make demo` runs: the repository's bench.yaml (every built-in strategy, both tools, RPC rig)."""
    from harness.plan.load_report import agrees
    from strategies import available_strategies

    import yaml

    config = yaml.safe_load((REPO / "bench.yaml").read_text())  # its strategies and rig, shorter tests
    config["bench"] = {"prompt_tokens": [64], "gen_tokens": [16], "repetitions": 3, "processes": 1, "ctx": 256}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("run", path, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    csv_path = tmp_path / "default" / "runs.csv"
    assert result.stdout.strip() == f"results: {csv_path}"
    rows = list(csv.DictReader(csv_path.open()))
    devices = read_devices(tmp_path / "default")
    predicted_of, actual_of = by_device(devices, "predicted_model_bytes"), by_device(devices, "actual_model_bytes")
    # every built-in strategy but experts-balanced, which spreads experts over several accelerators (on the
    # one-device default rig it is first-n-experts again)
    assert {r["strategy"] for r in rows} == set(available_strategies()) - {"experts-balanced"}
    assert {(r["tool"], r["test"]) for r in rows} == {(t, n) for t in ("llama-bench", "llama-server")
                                                     for n in ("pp64", "tg16")}
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        assert row["schema_version"] == str(SCHEMA_VERSION) and row["device"].startswith("RPC0[127.0.0.1:")
        assert (row["cpus"], row["rpc_cpus"], row["threads"]) == ("0", "1", "1")  # disjoint CPU sets, no spinning pair
        assert row["process_index"] == "0" and float(row["sample_ms_mean"]) > 0
        assert float(row["tps_mean"]) > 0 and len(json.loads(row["tps_samples"])) == 3
        assert row["engine_dialect"] == "mainline" and row["model_arch"] == "qwen3moe"
        assert row["model_quant"] == "Q8_0"
        assert (tmp_path / "default" / row["log_file"]).exists()
        # telemetry of the engine tree (and its RPC server) during this very phase
        assert float(row["rss_peak_mib"]) > 5 and float(row["cpu_pct_mean"]) >= 0
        assert float(row["loopback_mib_per_token"]) > 0  # the RPC rig's bus carried this phase's traffic
        assert (tmp_path / "default" / row["telemetry_file"]).stat().st_size > 0
        phases = json.loads((tmp_path / "default" / row["telemetry_file"].replace(".csv.gz", ".phases.json"))
                            .read_text())
        assert phases[row["test"]] and all(0 <= a <= b for a, b in phases[row["test"]])
        if row["tool"] == "llama-server" and row["test"] == "pp64":
            assert float(row["ttft_ms_mean"]) > 0 and len(json.loads(row["ttft_ms_samples"])) == 3
        if row["tool"] == "llama-bench" and row["strategy"] != "engine-fit":
            predicted, actual = predicted_of[row["run_id"]], actual_of[row["run_id"]]
            assert set(predicted) == set(actual)
            assert all(agrees(predicted[d] / MIB, actual[d] / MIB) for d in predicted), row["placement"]
    meta = json.loads((tmp_path / "default" / "meta.json").read_text())
    assert meta["config"]["name"] == "default" and meta["host"]["host_cpu"]
    # one planner: `moebench plan` listed exactly what ran (ports aside)
    plan = run_cli("plan", path, "--json")
    assert plan.returncode == 0, plan.stderr
    planned = {r["config_id"]: r["commands"] for r in json.loads(plan.stdout) if r["status"] == "planned"}
    executed: dict[str, list] = {}
    for row in rows:
        argv = _as_planned(json.loads(row["command"]))
        assert argv in planned[row["config_id"]], (argv, planned[row["config_id"]])
        executed.setdefault(row["config_id"], []).append(argv)
    assert {cid: sorted(map(tuple, argvs)) for cid, argvs in planned.items()} \
        == {cid: sorted(set(map(tuple, argvs))) for cid, argvs in executed.items()}


def _as_planned(argv: list[str]) -> list[str]:
    """A run's argument list with its ports as `moebench plan` shows them."""
    import re

    out, after_port = [], False
    for arg in argv:
        out.append("SERVER_PORT" if after_port else re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:RPC_PORT", arg))
        after_port = arg == "--port"
    return out


def test_predicted_oom_and_unplaceable_become_rows(mainline_engine, ik_engine, tmp_path):
    rows = _run_sweep(tmp_path, """
models: [{synth: tiny}]
engines: [mainline, ik]
tools: [llama-bench]
rpc_rig: true
vram_budget_mib: 16   # all-gpu: 15.0 MiB of weights + 1 MiB of KV cache (llama-bench's 256-token context) + compute
bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1, ctx: 256}
strategies:
  - all-gpu
  - name: first-n-experts
    params: {n: 6}
""")
    by = {(r["engine"].split("-")[0], r["strategy"]): r for r in rows}
    assert by["mainline", "all-gpu"]["status"] == "skipped: predicted-oom"
    assert "budget 16 MiB" in by["mainline", "all-gpu"]["reason"]
    assert by["mainline", "first-n-experts"]["status"] == "ok"
    # ik's llama-bench cannot place weights on an RPC device: said in the row, not hidden
    assert by["ik", "first-n-experts"]["status"] == "failed"
    assert "cannot place" in by["ik", "first-n-experts"]["reason"]


def _unloadable_gguf(path):
    """A well-formed GGUF the engines refuse: qwen3moe metadata missing, one tensor."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "qwen3moe")
    writer.add_tensor("token_embd.weight", np.ones((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_engine_failure_becomes_a_failed_row(mainline_engine, tiny_model, tmp_path):
    """A model the engine cannot load: the run fails, the row says why with the log tail, the sweep goes on."""
    broken = _unloadable_gguf(tmp_path / "broken.gguf")
    rows = _run_sweep(tmp_path, f"models:\n  - path: {broken}\n  - path: {tiny_model}\nengines: [mainline]\n"
                      "bench:\n  prompt_tokens: [32]\n  gen_tokens: [4]\n  repetitions: 1\n  processes: 1\n")
    failed = [r for r in rows if r["status"] == "failed"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(failed) == 1 and failed[0]["model_file"] == str(broken)
    assert "exit code" in failed[0]["reason"] and "|" in failed[0]["reason"]  # reason + log tail
    assert {r["test"] for r in ok} == {"pp32", "tg4"}


def test_hung_engine_is_killed_at_the_timeout(mainline_engine, tiny_model, tmp_path):
    rows = _run_sweep(tmp_path, f"models:\n  - path: {tiny_model}\nengines: [mainline]\n"
                      "bench:\n  prompt_tokens: [4096]\n  gen_tokens: [512]\n  repetitions: 50\n  ctx: 8192\n"
                      "timeouts:\n  run_s: 2\n")
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert rows[0]["reason"].startswith("timed out after 2 s")
    assert float(rows[0]["duration_s"]) < 30


def test_engines_write_nothing_into_the_current_folder(ik_engine, tiny_model, tmp_path, monkeypatch):
    """ik's llama-server writes llama.log into its working folder: that must be the run's log folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    logs = tmp_path / "logs"
    logs.mkdir()
    with LlamaServer(ik_engine.tool("llama-server"), tiny_model, ["-t", "2", "-c", "256"],
                     log_path=logs / "server.log") as server:
        server.complete("hello", n_predict=2)
    assert list(cwd.iterdir()) == []


def test_run_prints_a_summary_with_the_best_strategies(mainline_engine, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text("""
models: [{synth: tiny}]
engines: [mainline]
rpc_rig: true
bench: {prompt_tokens: [32], gen_tokens: [8], repetitions: 1, processes: 1, ctx: 256}
strategies: [all-gpu, cpu-moe]
""")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stderr and "all-gpu" in result.stderr and "cpu-moe" in result.stderr
    from harness.analysis.report import write_report

    best = write_report(tmp_path / "out" / "default", with_plots=False)["best"]
    for _, b in best.iterrows():  # the same "best" as the report's
        assert f"best for {b['criterion']} ({b['tool']}, {b['engine']}, {b['test']}): {b['best']}" in result.stderr
    assert set(best["criterion"]) == {"pp", "tg", "balanced"}
    again = run_cli("run", config, "--out", tmp_path / "out", "--resume")
    assert again.returncode == 0 and "2 of 2 processes already done" in again.stderr


def test_ik_sweep_bench_measures_speed_over_depth(ik_engine, mainline_engine, tmp_path):
    rows = _run_sweep(tmp_path, """
models: [{synth: tiny-glm}]
engines: [ik, mainline]
tools: [llama-sweep-bench]
bench: {ctx: 256, ubatch: 64, processes: 1}
""")
    ik = [r for r in rows if r["engine_dialect"] == "ik"]
    assert {r["test"] for r in ik} == {f"{kind}@d{d}" if d else kind for kind in ("pp64", "tg16")
                                       for d in (0, 64, 128, 192)}
    assert all(r["status"] == "ok" and float(r["tps_mean"]) > 0 for r in ik)
    # one process for every depth and no timestamps per depth: no per-phase figures, never the whole process's
    assert all(r["telemetry_samples"] == "" and r["cpu_pct_mean"] == "" for r in ik)
    mainline = [r for r in rows if r["engine_dialect"] == "mainline"]
    assert len(mainline) == 1 and mainline[0]["status"] == "failed"
    assert "has no llama-sweep-bench" in mainline[0]["reason"]


def test_server_concurrency_gives_aggregate_generation_speed(mainline_engine, tmp_path):
    rows = {r["test"]: r for r in _run_sweep(tmp_path, """
models: [{synth: tiny}]
engines: [mainline]
tools: [llama-server]
bench: {prompt_tokens: [32], gen_tokens: [16], repetitions: 2, processes: 1, ctx: 256, concurrency: [1, 3]}
""")}
    assert set(rows) == {"pp32", "tg16", "tg16x3"}
    assert all(r["status"] == "ok" for r in rows.values())
    assert "-np" in json.loads(rows["tg16x3"]["command"])
    assert float(rows["tg16x3"]["tps_mean"]) > 0 and len(json.loads(rows["tg16x3"]["tps_samples"])) == 2
    # aggregate = every request's generated tokens over the wall span of the three (not a sum of rates)
    folder = tmp_path / "out" / "default"
    windows = json.loads((folder / rows["tg16x3"]["telemetry_file"].replace(".csv.gz", ".phases.json")).read_text())
    for (start, end), sample in zip(windows["tg16x3"], json.loads(rows["tg16x3"]["tps_samples"])):
        assert sample == pytest.approx(3 * 16 / (end - start), rel=0.02)


def test_missing_model_and_engine_are_one_line_errors(mainline_engine, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text(f"models: [{{path: {tmp_path}/nope.gguf}}]\nengines: [mainline]\n")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 2 and "nope.gguf does not exist" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    config.write_text(f"models: [{{synth: tiny}}]\nengines: [{{name: mine, path: {tmp_path}/no-build/bin}}]\n")
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_processes_are_replicated_in_interleaved_rounds(mainline_engine, tmp_path):
    """Each configuration in fresh processes, round after round; each row its process's mean, the interval over
    the processes so far, and the stability warnings (these tests are deliberately too short)."""
    rows = _run_sweep(tmp_path, """
models: [{synth: tiny}]
engines: [mainline]
rpc_rig: true
bench: {prompt_tokens: [32], gen_tokens: [8], repetitions: 2, processes: 3, ctx: 256}
strategies: [all-gpu, cpu-moe, {name: first-n-experts, params: {n: 2}}]
""")
    assert len(rows) == 3 * 2 * 3 and all(r["status"] == "ok" for r in rows)
    rounds = [int(r["process_index"]) for r in rows]
    assert rounds == sorted(rounds)  # round after round
    orders = [[r["config_id"] for r in rows if r["process_index"] == str(k) and r["test"] == "pp32"]
              for k in range(3)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders) and len(set(orders[0])) == 3
    assert len({r["run_id"] for r in rows}) == len(rows)
    assert len({r["log_file"] for r in rows}) == 3 * 3  # one log per process (llama-bench: one per test inside)
    for r in rows:
        samples = json.loads(r["tps_samples"])
        assert len(samples) == 2 and float(r["tps_mean"]) == pytest.approx(sum(samples) / 2, rel=1e-3)
        short = float(r["sample_ms_mean"]) < 100  # pp32 and tg8 are too short on a quiet machine
        assert (f"samples {float(r['sample_ms_mean']):.0f} ms < 100 ms" in r["warnings"]) == short, r["warnings"]
    for cid in {r["config_id"] for r in rows}:
        last = [r for r in rows if r["config_id"] == cid and r["test"] == "tg8" and r["process_index"] == "2"][0]
        means = [float(r["tps_mean"]) for r in rows if r["config_id"] == cid and r["test"] == "tg8"]
        low, high = float(last["tps_ci_low"]), float(last["tps_ci_high"])
        assert low < sum(means) / 3 < high  # the interval over the three processes


def test_until_adds_rounds_only_while_the_interval_is_too_wide(mainline_engine, tmp_path):
    """`until`: after the fixed rounds, more only for configurations whose interval is wider than the target,
    up to max_processes."""
    def run(ci_pct: float, out: str) -> list[dict]:
        config = tmp_path / f"{out}.yaml"
        config.write_text(f"""
models: [{{synth: tiny}}]
engines: [mainline]
tools: [llama-bench]
rpc_rig: true
strategies: [all-gpu, cpu-moe, {{name: first-n-experts, params: {{n: 2}}}}]
bench: {{prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 3, ctx: 256,
        until: {{ci_pct: {ci_pct}, max_processes: 5}}}}
""")
        result = run_cli("run", config, "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr
        return list(csv.DictReader((tmp_path / out / "default" / "runs.csv").open()))

    tight = run(0.0001, "tight")  # never met: every configuration runs max_processes
    assert {int(r["process_index"]) for r in tight} == set(range(5)) and len(tight) == 3 * 2 * 5
    rows = run(30, "target")
    for strategy in ("all-gpu", "cpu-moe", "first-n-experts"):
        mine = [r for r in rows if r["strategy"] == strategy]
        after_fixed = [r for r in mine if r["process_index"] == "2"]  # the intervals the decision saw
        wide = any((float(r["tps_ci_high"]) - float(r["tps_ci_low"])) / (float(r["tps_ci_high"])
                                                                          + float(r["tps_ci_low"])) * 100 > 30
                   for r in after_fixed)
        extra = max(int(r["process_index"]) for r in mine) > 2
        assert extra == wide, (strategy, [(r["test"], r["tps_ci_low"], r["tps_ci_high"]) for r in after_fixed])
