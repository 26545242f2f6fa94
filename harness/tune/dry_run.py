"""`moebench tune MODEL --dry-run --hardware PROFILE` (or `--gpu/--ram/--cores`): tune's answer for a box described,
not measured. The same space and planner request as a measured tune (`harness.tune.space`, `TuneSettings`), the
same budget rule (the points whose served memory, KV cache and compute buffers at `--ctx x --parallel` included,
exceed the budget are left out), the same objective (`harness.tune.settings.score`); each point predicted by the
described-box model with the prior constants (`harness.perf.described`, `harness.perf.priors.PRIOR`), not a
calibration; no engine process runs. The balanced objective's reference is the best predicted pp and tg (a
measured tune's is the best measured)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.config import ModelSpec
from harness.errors import UserError
from harness.hardware.profile import HardwareProfile
from harness.models.inspect import ModelInfo
from harness.perf.described import DescribedTest, described_layout, predict_described
from harness.perf.priors import PRIOR, PRIOR_FIT, Efficiencies
from harness.plan.placement import Placement
from harness.plan.planner import plan, resolve_model
from harness.runner.commands import commands
from harness.tune.search import knob_values_of
from harness.tune.settings import TuneSettings, score
from harness.tune.space import space_strategies, spec_of
from harness.tune.where import FIT_MARGIN_MIB
from harness.units import MIB

DESCRIBED_DEVICE = "CUDA0"   # the described box's one GPU as both engines name it


@dataclass
class Point:
    config_id: str
    label: str
    placement: Placement
    dialect: str
    ubatch: int
    op_offload: bool = True
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    spec: dict | None = None          # the bench.yaml strategy entry that plans it
    knobs: dict | None = None         # its knob values as bench.yaml settings
    served_vram_mib: float | None = None


@dataclass
class Ranked:
    point: Point
    predicted: dict[str, float]       # "pp" / "tg" tokens/s
    score: float | None
    terms_s: dict[str, dict[str, float]]


def described_budget_mib(profile: HardwareProfile) -> float:
    """The described card's memory less --fit's margin (a measured tune takes the free memory instead)."""
    return profile.gpu.vram_gib * 1024 - FIT_MARGIN_MIB


def rank_points(points: list[Point], model: ModelInfo, profile: HardwareProfile, *, objective: str,
                prompt_tokens: int, gen_tokens: int, depth: int, eff: Efficiencies = PRIOR) -> list[Ranked]:
    """Every point predicted on the described box, best first by tune's objective."""
    out = []
    for p in points:
        layout = described_layout(p.placement, dialect=p.dialect, op_offload=p.op_offload,
                                  cache_type_k=p.cache_type_k, cache_type_v=p.cache_type_v)
        found = {kind: predict_described(model, layout, DescribedTest(kind, tokens, depth, p.ubatch), profile, eff)
                 for kind, tokens in (("pp", prompt_tokens), ("tg", gen_tokens))}
        out.append(Ranked(p, {k: f.tps for k, f in found.items()}, None,
                          {k: f.prediction.terms_s for k, f in found.items()}))
    reference = {kind: max((r.predicted[kind] for r in out), default=0.0) for kind in ("pp", "tg")}
    for r in out:
        r.score = score(r.predicted, objective, reference)
    return sorted(out, key=lambda r: -(r.score or 0.0))


def planned_points(settings: TuneSettings, strategies: list[dict] | None = None, knobs: dict | None = None
                   ) -> tuple[ModelInfo, list[Point], int]:
    """The space (or `strategies` with `knobs`) planned by the one planner with tune's request; the points that
    fit the budget served."""
    model = resolve_model(ModelSpec(**settings.model), write=False)   # a preset's plan: nothing written
    request = settings.request(strategies or space_strategies(model.info, settings.space), knobs)
    planned = plan(request)
    points = []
    for conf in planned:
        if conf.error or conf.placement is None or conf.target is None or not settings.fits(conf):
            continue
        memory = settings.serving_memory(conf)
        k = conf.knobs
        points.append(Point(conf.id, conf.placement.describe() + (f" [{k.describe()}]" if k.describe() else ""),
                            conf.placement, conf.target.dialect, k.effective_ubatch(request.bench.ctx),
                            k.op_offload is not False, k.cache_type_k or "f16", k.cache_type_v or "f16",
                            spec_of(conf), knob_values_of(conf),
                            round(memory.vram_bytes / MIB, 1) if memory else None))
    return model.info, points, len(planned)


def served_command(settings: TuneSettings, point: Point) -> list[str] | str:
    """The llama-server argument list of the point at the session's context and slots (the port a
    placeholder), as a measured tune's answer gives it."""
    request = replace(settings.request([point.spec], point.knobs), tools=["llama-server"])
    request = replace(request, bench=settings.serving_bench(point.knobs))
    for conf in plan(request):
        argvs = commands(conf, request.bench)
        return argvs[0] if argvs else conf.error
    return "nothing planned"


def dry_run(settings: TuneSettings, profile: HardwareProfile, *, top: int = 10) -> dict:
    info, points, planned = planned_points(settings)
    if not points:
        raise UserError(f"no placement in the space ({', '.join(settings.space)}) is predicted to fit "
                        f"{settings.vram_budget_mib:g} MiB at {settings.serving}; raise --vram-budget-mib")
    ranked = rank_points(points, info, profile, objective=settings.objective, prompt_tokens=settings.prompt_tokens,
                         gen_tokens=settings.gen_tokens, depth=settings.depth)
    best = ranked[0]
    _, baseline, _ = planned_points(settings, [{"name": "cpu-moe"}], settings.fixed_knobs)
    gain = None
    if baseline:   # a measured tune's baseline, predicted (engine-fit places at load time: nothing to predict)
        cpu_moe = rank_points(baseline, info, profile, objective="tg", prompt_tokens=settings.prompt_tokens,
                              gen_tokens=settings.gen_tokens, depth=settings.depth)[0]
        gain = {"baseline": cpu_moe.point.label, "predicted": cpu_moe.predicted,
                "ratio": {k: best.predicted[k] / cpu_moe.predicted[k] for k in ("pp", "tg")}}
    return {"hardware": profile.to_dict(), "described": profile.describe(), "objective": settings.objective,
            "serving": settings.serving, "vram_budget_mib": settings.vram_budget_mib,
            "points": {"planned": planned, "fit": len(points)},
            "constants": (f"prior fitted on {len(PRIOR_FIT['fitted_on'])} published tables ({PRIOR_FIT['date']}, "
                          "harness/perf/prior_fit.json)" if PRIOR_FIT else "the stated guess (priors.GUESS)"),
            "best": {"label": best.point.label, "predicted": best.predicted,
                     "llama_server": served_command(settings, best.point), "gain_over_cpu_moe": gain},
            "ranking": [{"label": r.point.label, "config_id": r.point.config_id, "score": r.score,
                         "predicted": r.predicted, "served_vram_mib": r.point.served_vram_mib}
                        for r in ranked[:top]]}
