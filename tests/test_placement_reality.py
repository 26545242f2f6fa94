"""Checked against reality, on the RPC rig (each engine's own RPC server on loopback as the accelerator):
every built-in strategy on both engines and two model families, one of them also split in three files; the model bytes per device that moebench
predicts agree with what the engine itself reports, within 2% or 1 MiB, and the performance model's graph
(`harness.perf.graph`) has exactly the backend segments the engine logs (`graph splits`)."""

from __future__ import annotations

import pytest

from harness import procs
from harness.engines.rpc import RpcServer
from harness.models import inspect_model, synthetic_model
from harness.models.shards import SplitRule
from harness.perf.workload import layout_for, reported_splits
from harness.plan.flags import compile_flags
from harness.knobs import Knobs
from harness.plan.load_report import parse_report
from harness.plan.placement import loaded_tensors
from harness.plan.targets import resolve_target
from harness.plan.verify import predicted_model_buffers
from harness.tools.server_process import LlamaServer
from strategies import available_strategies, get_strategy

from buffer_checks import check_against_report

PARAMS = {
    "first-n-experts": {"n": 2}, "last-n-experts": {"n": 3}, "head-tail-experts": {"head": 1, "tail": 2},
    "gpu-layers": {"k": 3}, "last-n-layers-cpu": {"n": 2}, "partial-experts": {"n": 3, "parts": "gate,up"},
    "custom": {"overrides": r"blk\.2\.ffn_down=CPU;^output\.weight=CPU"}, "engine-fit": {"margin_mib": 512},
}
MODELS = {**{name: (name, None) for name in (
    "tiny", "tiny-glm", "tiny-glm-mtp", "tiny-deepseek", "tiny-gpt-oss", "tiny-qwen3next", "tiny-qwen35moe", "tiny-llama4",
    "tiny-mixtral", "tiny-minimax-m2", "tiny-ernie")},
          "tiny-split": ("tiny", SplitRule(max_tensors=40))}  # three shards: mapped per file


@pytest.fixture(scope="module")
def rig(engine, tmp_path_factory):
    """An engine and its own RPC server on loopback."""
    logs = tmp_path_factory.mktemp(f"rig-{engine.dialect}")
    with RpcServer(engine, threads=1, log_path=logs / "rpc.log") as rpc:
        yield engine, rpc, logs


def _load_log(engine, tool, model_path, args, log_path) -> str:
    if tool == "llama-bench":  # mainline: -v prints the load report
        argv = [str(engine.tool(tool)), "-m", str(model_path), "-p", "16", "-n", "4", "-r", "1", "-t", "2",
                "-v", *args]
        result = procs.run(argv, timeout_s=180, log_path=log_path, stdout_path=log_path.with_suffix(".out"))
        assert result.ok, result.output_tail
    else:  # llama-server: ik always prints it
        with LlamaServer(engine.tool(tool), model_path, [*args, "-c", "256", "-t", "2"], log_path=log_path):
            pass
    return log_path.read_text(errors="replace")


@pytest.mark.parametrize("preset", MODELS)
def test_every_strategy_places_what_it_predicts(rig, preset):
    engine, rpc, logs = rig
    tool = "llama-bench" if engine.dialect == "mainline" else "llama-server"  # ik's bench cannot use RPC
    model_path = synthetic_model(MODELS[preset][0], split=MODELS[preset][1])
    model = inspect_model(model_path)
    target = resolve_target(engine, tool, f"RPC0[{rpc.endpoint}]")
    failures, checked = [], 0
    for name in available_strategies():
        placement = get_strategy(name).placement(model, PARAMS.get(name, {}))
        compiled = compile_flags(placement, model, target)
        text = _load_log(engine, tool, model_path, compiled.args, logs / f"{preset}-{name}.log")
        report = parse_report(text)
        assert report is not None, f"{name}: no load report in {logs}"
        if placement.deferred:  # engine-fit: the engine decided; what it placed is read back
            loaded_bytes = sum(t.n_bytes for t in loaded_tensors(model))  # not the skipped MTP layer's
            assert sum(report.model_bytes_by_device.values()) >= loaded_bytes * 0.99
            continue
        splits = reported_splits(model, layout_for(placement, target, Knobs()), 512)
        if splits != report.graph_splits:
            failures.append(f"{name} {compiled.args}: graph splits predicted {splits}, engine {report.graph_splits}")
        predicted = predicted_model_buffers(placement, model, target, compiled)
        for check in check_against_report(predicted, report):
            checked += 1
            if not check.ok:
                failures.append(f"{name} {compiled.args}: {check}")
    assert not failures, "\n".join(failures)
    assert checked >= 2 * (len(available_strategies()) - 1) - 1
