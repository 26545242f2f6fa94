"""The answer of `moebench tune`: `tune.json` (the best point with the exact llama-server and llama-bench argument
lists, every measured point, the feasible candidates, the baselines) and `tune.md`, paste-ready: the command line,
the evidence table, the gain over `--fit` and over cpu-moe with its noise verdict."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pandas as pd

from harness.analysis.markdown import fmt, markdown_table
from harness.intervals import noise_verdict
from harness.plan.planner import plan
from harness.runner.commands import commands
from harness.tune.search import Tuner
from harness.tune.settings import Measured, TuneState, score
from harness.units import MIB


def _tps(m: Measured) -> dict:
    return {kind: {"mean": v[0], "ci_low": v[1], "ci_high": v[2]} for kind, v in m.tps.items()}


def _commands(tuner: Tuner, m: Measured) -> dict:
    """The exact argument lists of the point for both tools (the llama-server port and, on the RPC rig, the
    server's port are placeholders)."""
    s = tuner.settings
    out = {}
    for tool in ("llama-server", "llama-bench"):
        request = replace(s.request([m.spec], m.knobs), tools=[tool])
        if tool == "llama-server":  # the answer is served at the session's context and slots
            request = replace(request, bench=s.serving_bench(m.knobs))
        for conf in plan(request):
            argv = commands(conf, request.bench)
            out[tool] = argv if argv else conf.error
    return out


def _gain(best: Measured, baseline: Measured | None, objective: str) -> dict | None:
    if baseline is None or objective not in best.tps or objective not in baseline.tps:
        return None
    (a, a_low, a_high), (b, b_low, b_high) = best.tps[objective], baseline.tps[objective]
    verdict = noise_verdict(a_low, a_high, b_low, b_high)
    return {"baseline": baseline.label, "ratio": a / b if b else None, "best_tps": a, "baseline_tps": b,
            "verdict": {"a": "beyond noise", "b": "baseline faster beyond noise", "tie": "within noise",
                        "untested": "untested"}[verdict]}


def _served_vram_mib(s, conf) -> float | None:
    memory = s.serving_memory(conf)
    return round(memory.vram_bytes / MIB, 1) if memory else None


def write_answer(tuner: Tuner, state: TuneState, out: Path) -> dict:
    s = tuner.settings
    best = tuner.best(state)
    kind = "tg" if s.objective == "balanced" else s.objective
    best_m = state.measured[best[0]] if best else None
    baselines = {name: state.measured.get(cid) for name, cid in state.baselines.items()}
    answer = {
        "objective": s.objective, "depth": s.depth, "vram_budget_mib": s.vram_budget_mib,
        "ctx": s.ctx, "parallel": s.parallel, "where": s.where_said,
        "engine": s.engine, "tool": s.tool, "device": "rpc-rig" if s.rpc_rig else s.device,
        "stopped_because": state.stopped_because, "results": str(s.out / s.name),
        "best": None if best_m is None else {
            "label": best_m.label, "strategy": best_m.spec.get("name"), "params": best_m.spec.get("params", {}),
            "knobs": best_m.knobs, "measured": _tps(best_m), "commands": _commands(tuner, best_m),
            "gain_over": {name: _gain(best_m, b, kind) for name, b in baselines.items()}},
        "runs": [{"label": m.label, "config_id": cid, "measured": _tps(m), "failed": m.failed,
                  "predicted": next((c.predicted for c in state.candidates if c.config_id == cid), None)}
                 for cid, m in state.measured.items()],
        "baselines": {name: (m.label if m else None) for name, m in baselines.items()},
        "candidates": [{"label": c.label, "config_id": c.config_id, "predicted": c.predicted,
                        "vram_mib": _served_vram_mib(s, c.conf)}
                       for c in state.candidates],
        "model_error": state.model_error,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps(answer, indent=1, default=str))
    (out / "tune.md").write_text(render_markdown(answer, state, tuner))
    return answer


def render_markdown(answer: dict, state: TuneState, tuner: Tuner) -> str:
    best = answer["best"]
    lines = [f"# moebench tune: {answer['objective']} under {answer['vram_budget_mib']:g} MiB",
             "", f"Engine {answer['engine']['name']} ({answer['tool']}), device {answer['device']}"
             + (f" ({answer['where']})" if answer.get("where") else "") + f"; served at -c "
             f"{answer['ctx'] * answer['parallel']}" + (f" -np {answer['parallel']}" if answer["parallel"] > 1 else "")
             + f" (the KV cache and compute buffers at that context count in the budget); measured at depth "
             f"{answer['depth']}. Stopped: {answer['stopped_because']}. {len(answer['runs'])} configurations "
             f"measured of {len(answer['candidates'])} feasible.", ""]
    if best is None:
        return "\n".join(lines + ["Nothing was measured successfully.", ""])
    server = best["commands"].get("llama-server")
    command = shlex.join(server[0]) if isinstance(server, list) and server else str(server)
    lines += [f"**Best: {best['label']}**", "", "llama-server with this placement (SERVER_PORT, and on the RPC rig "
              "RPC_PORT, stand for your ports):", "", "```sh", command, "```", ""]
    for name, gain in best["gain_over"].items():
        if gain and gain["baseline"] == best["label"]:
            lines.append(f"- {name} is the best itself")
        elif gain:
            lines.append(f"- vs {name} ({gain['baseline']}): {gain['ratio']:.2f}x "
                         f"({fmt(gain['best_tps'])} vs {fmt(gain['baseline_tps'])} t/s, {gain['verdict']})")
        else:
            lines.append(f"- vs {name}: not measured")
    ref = {k: max((r["measured"].get(k, {}).get("mean", 0) for r in answer["runs"]), default=0) for k in ("pp", "tg")}
    table = pd.DataFrame([{
        "configuration": r["label"],
        "pp t/s": r["measured"].get("pp", {}).get("mean"),
        "pp 95% CI": _ci(r["measured"].get("pp")),
        "tg t/s": r["measured"].get("tg", {}).get("mean"),
        "tg 95% CI": _ci(r["measured"].get("tg")),
        "predicted pp": (r["predicted"] or {}).get("pp"), "predicted tg": (r["predicted"] or {}).get("tg"),
        "score": score({k: v["mean"] for k, v in r["measured"].items()}, answer["objective"], ref),
        "failed": r["failed"]} for r in answer["runs"]]).sort_values("score", ascending=False, na_position="last")
    lines += ["", "## Evidence", "", markdown_table(table), "",
              "Model error bound used for the stopping rule: " + ", ".join(
                  f"{k} ±{v:.0%}" for k, v in answer["model_error"].items()), ""]
    return "\n".join(lines)


def _ci(found: dict | None) -> str:
    if not found or found["ci_low"] != found["ci_low"]:  # none, or NaN: a single process has no interval
        return "–"
    return f"{fmt(found['ci_low'])}–{fmt(found['ci_high'])}"
