"""One planner: `moebench plan --json` lists exactly the argument lists `moebench run` executes, for the
repository's bench.yaml and every example. An example naming a machine's own engine build or GGUF gets the
built engines (same names, so its engine_args still apply) and the synthetic preset of the same shapes; the
run side is planned in-process with real-looking ports, through the same planner and argument builders
`moebench run` uses, without starting engines (the examples' models are many GB). The repository's bench.yaml
is also run for real in tests/test_runs_end_to_end.py::test_demo_sweep_writes_real_results, whose rows'
`command` column is checked against the plan the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
RPC_ENDPOINT, SERVER_PORT = "127.0.0.1:50999", 41234
_PRESET_FOR = (("30b", "qwen3-30b-a3b"), ("glm", "glm-4.5-air"))


def runnable_here(path: Path, tmp_path: Path, engines: dict) -> Path:
    """The sweep file with its own builds swapped for the built engines and its GGUF files for presets."""
    data = yaml.safe_load(path.read_text())
    specs = []
    for spec in data["engines"]:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        if spec["name"] not in ("mainline", "ik"):
            built = engines["ik" if spec["name"].startswith("ik") else "mainline"]
            spec = {"name": spec["name"], "path": str(built.bin_dir)}
        specs.append(spec)
    data["engines"] = specs
    for model in data["models"]:
        if "path" in model and not Path(model["path"]).expanduser().exists():
            name = model.pop("path").lower()
            model["synth"] = next((preset for key, preset in _PRESET_FOR if key in name), "tiny")
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(data))
    return out


def planned(config_path: Path) -> dict[str, dict]:
    result = run_cli("plan", config_path, "--json")
    assert result.returncode == 0, result.stderr
    return {row["config_id"]: row for row in json.loads(result.stdout)}


def run_side(config_path: Path) -> dict[str, tuple[str, list[list[str]]]]:
    """What `moebench run` would execute: its planning (real ports, its own shuffled order) and argv builders."""
    from dataclasses import replace

    from harness.config import load_config
    from harness.plan.planner import find_engines, plan, status
    from harness.plan.request import request_from_config
    from harness.runner.commands import commands

    config = load_config(config_path)
    request = request_from_config(config)
    endpoints = {e.name: RPC_ENDPOINT for e in find_engines(request)}  # the rig's, by the found engine's name
    confs = plan(replace(request, rpc_endpoints=endpoints))
    return {c.id: (status(c), commands(c, config.bench, port=SERVER_PORT)) for c in confs}


def with_ports(argv: list[str]) -> list[str]:
    return [a.replace("RPC_PORT", RPC_ENDPOINT.split(":")[1]).replace("SERVER_PORT", str(SERVER_PORT))
            for a in argv]


@pytest.mark.parametrize("path", [REPO / "bench.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_plan_lists_what_run_executes(path, tmp_path, mainline_engine, ik_engine):
    config_path = runnable_here(path, tmp_path, {"mainline": mainline_engine, "ik": ik_engine})
    plan, run = planned(config_path), run_side(config_path)
    assert set(plan) == set(run) and plan
    for cid, row in plan.items():
        state, argvs = run[cid]
        assert row["status"] == state, (row["strategy"], row["params"], row["error"])
        assert [with_ports(argv) for argv in row["commands"]] == argvs, (row["strategy"], row["params"])
    runnable = [row for row in plan.values() if row["status"] == "planned"]
    assert runnable and all(row["commands"] for row in runnable)


def test_example_sweeps_knobs_on_a_24gb_card(tmp_path, mainline_engine, ik_engine):
    """examples/ubatch-vs-ncmoe.yaml: every n with every ubatch; a bigger micro-batch needs more experts in
    RAM before it fits."""
    config_path = runnable_here(REPO / "examples" / "ubatch-vs-ncmoe.yaml", tmp_path,
                                {"mainline": mainline_engine, "ik": ik_engine})
    rows = list(planned(config_path).values())
    assert {r["knobs"]["ubatch"] for r in rows} == {512, 2048, 4096}
    fits = {}
    for r in rows:
        fits.setdefault(r["knobs"]["ubatch"], []).append((r["params"]["n"], r["status"] == "planned"))
    first_fit = {ub: min(n for n, ok in points if ok) for ub, points in fits.items()}
    assert first_fit[512] < first_fit[4096]
    for r in rows:
        argv = r["commands"][0]
        assert argv[argv.index("-ub") + 1] == str(r["knobs"]["ubatch"]) and "-ncmoe" in argv

