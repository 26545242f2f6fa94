"""`moebench tune --dry-run` on a described box: the ranking by tune's objective with the prior constants, and
the whole command (planned by the one planner, no engine process, no calibration)."""

import json

import pytest

from harness.hardware.profile import profile_from_args
from harness.models.inspect import inspect_preset
from harness.tune.dry_run import Point, described_budget_mib, rank_points
from strategies.registry import get_strategy
from tests.conftest import run_cli

BOX = profile_from_args("RTX 4090", "ddr5-6000x2", 16)


def _point(model, strategy, **params):
    s = get_strategy(strategy)
    placement = s.place(model, s.Params(**params))
    return Point(placement.describe(), placement.describe(), placement, "mainline", 512)


def test_more_experts_on_the_gpu_ranks_first_for_generation():
    model = inspect_preset("qwen3.6-35b-a3b")
    points = [_point(model, "cpu-moe"), _point(model, "first-n-experts", n=30), _point(model, "first-n-experts", n=10)]
    ranked = rank_points(points, model, BOX, objective="tg", prompt_tokens=512, gen_tokens=128, depth=0)
    assert [r.point.label for r in ranked] == [points[2].label, points[1].label, points[0].label]
    assert all(r.score == r.predicted["tg"] for r in ranked)


def test_balanced_scores_against_the_best_predicted():
    model = inspect_preset("qwen3.6-35b-a3b")
    points = [_point(model, "cpu-moe"), _point(model, "first-n-experts", n=10)]
    ranked = rank_points(points, model, BOX, objective="balanced", prompt_tokens=512, gen_tokens=128, depth=0)
    assert ranked[0].score == pytest.approx(1.0) and 0 < ranked[1].score < 1.0


def test_the_budget_is_the_card_less_fits_margin():
    assert described_budget_mib(BOX) == 24 * 1024 - 1024


def test_dry_run_ranks_and_recommends_a_command(mainline_engine):
    """The planner's request as tune builds it, on a box described: a ranking, a llama-server command with the
    serving context, and a bigger context leaves fewer points in the budget."""
    def answer(*extra):
        out = run_cli("tune", "synth:qwen3.6-35b-a3b", "--dry-run", "--gpu", "RTX 4090", "--ram", "ddr5-6000x2",
                      "--cores", "16", "--engine", "mainline", "--space", "first-n-experts",
                      "--json", *extra)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    small, big = answer("--ctx", "4096"), answer("--ctx", "131072")
    assert small["ranking"] and small["best"]["label"] == small["ranking"][0]["label"]
    command = small["best"]["llama_server"]
    assert "llama-server" in command[0] and command[command.index("-c") + 1] == "4096"
    assert command[command.index("-t") + 1] == "16"       # the described box's cores
    assert big["points"]["fit"] < small["points"]["fit"]
    assert "prior fitted" in small["constants"]
    gain = small["best"]["gain_over_cpu_moe"]       # tune's baseline, predicted: the best beats it in tg
    assert gain["baseline"].startswith("cpu-moe") and gain["ratio"]["tg"] > 1


def test_a_described_box_without_dry_run_is_refused():
    out = run_cli("tune", "synth:qwen3.6-35b-a3b", "--gpu", "RTX 4090", "--ram", "ddr5-6000x2", "--cores", "16")
    assert out.returncode == 2 and "only with --dry-run" in out.stderr
