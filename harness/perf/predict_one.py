"""`moebench predict`: one placement planned by the one planner (as `moebench plan` would), then predicted."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.perf.configs import Predictor, predicted_splits, test_of
from harness.perf.model import TERM_LABELS, roofline_tps
from harness.grid import parse_assignments
from harness.plan.planner import plan
from harness.plan.request import bench_settings, point_request


def model_spec(model: str) -> dict:
    """The bench.yaml model entry of a command line's MODEL: `synth:PRESET` or a GGUF file."""
    if model.startswith("synth:"):
        return {"synth": model.split(":", 1)[1]}
    if not Path(model).is_file():
        raise UserError(f"model {model!r}: no such file (give a GGUF file, or synth:PRESET)")
    return {"path": str(Path(model).resolve())}


def predict_placement(model: str, strategy: str, params: list[str], *, engine: dict, rpc_rig: bool,
                      device: str | None, tool: str, prompt_tokens: int, gen_tokens: int, depth: int,
                      knobs: list[str]) -> dict:
    bench = bench_settings(prompt_tokens=[prompt_tokens], gen_tokens=[gen_tokens], depth=[depth],
                           ctx=max(prompt_tokens + gen_tokens + depth, 256), **parse_assignments(knobs))
    planned = plan(point_request(model_spec(model), engine, strategy, parse_assignments(params), tool=tool,
                                 rpc_rig=rpc_rig, device=device, bench=bench))
    if not planned:
        raise UserError("nothing to predict")
    conf = planned[0]
    if conf.error:
        raise UserError(conf.error)
    predictor = Predictor.for_configurations([conf])
    cal = predictor.calibration(conf)
    tests = []
    for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens)):
        found = predictor.prediction(conf, test_of(kind, tokens, depth, conf, bench))
        if found is None:
            raise UserError(f"{conf.placement.describe() if conf.placement else strategy}: the engine decides "
                            "this placement at load time; there is nothing to predict before it runs")
        w, pred = found
        roof = roofline_tps(w, cal.peaks) if cal and cal.peaks else None
        tests.append({"test": f"{kind}{tokens}" + (f"@d{depth}" if depth else ""),
                      "predicted_tps": pred.tps if pred else None, "roofline_tps": roof,
                      "shares": {TERM_LABELS[k]: v for k, v in pred.shares().items()} if pred else {},
                      "terms_s": pred.terms_s if pred else {}, "crossings_per_pass": w.crossings / max(w.passes, 1),
                      "bytes_by_device": w.bytes_by_device, "flops_by_device": w.flops_by_device,
                      "bus_bytes": w.bus_bytes})
    splits = predicted_splits(conf, test_of("pp", prompt_tokens, depth, conf, bench).ubatch)
    return {"placement": conf.placement.describe(), "engine": conf.engine.name, "tool": conf.tool,
            "device": conf.target.buffer_type, "threads": conf.threads, "graph_splits": splits,
            "calibration": (f"{cal.engine} on {cal.device}, {cal.created_at}" if cal and cal.constants_for(
                conf.tool, conf.threads) else None), "tests": tests}
