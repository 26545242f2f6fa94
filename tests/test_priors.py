"""Prior constants from a hardware profile: each constant is the profile's figure over its efficiency."""

import pytest

from harness.hardware.profile import profile_from_args
from harness.perf.priors import GUESS as GUESS_EFF
from harness.perf.priors import PRIOR, prior_calibration, prior_constants, profile_peaks


def test_peaks_are_the_profiles_figures():
    peaks = profile_peaks(profile_from_args("RTX 4090", "ddr5-6000x2", 16))
    assert (peaks.cpu_bytes_s, peaks.accel_bytes_s) == (96e9, 1008e9)
    assert peaks.bus_bytes_s == pytest.approx(16 * 1969e6)


def test_constants_scale_with_the_box():
    slow = prior_constants(profile_from_args("RTX 3060", "ddr4-3200x2", 8))
    fast = prior_constants(profile_from_args("RTX 4090", "ddr5-6400x2", 16))
    assert slow.tg["cpu_s_per_byte"] / fast.tg["cpu_s_per_byte"] == pytest.approx(102.4 / 51.2)
    assert slow.tg["accel_s_per_byte"] / fast.tg["accel_s_per_byte"] == pytest.approx(1008 / 360)
    assert slow.pp["cpu_s_per_flop"] / fast.pp["cpu_s_per_flop"] == pytest.approx(2)
    assert fast.tg["accel_s_per_byte"] == pytest.approx(1 / (PRIOR.gpu_read * 1008e9))


def test_efficiencies_change_only_their_own_constant():
    box = profile_from_args("RTX 3090", "ddr4-3600x2", 12)
    base, halved = prior_constants(box), prior_constants(box, PRIOR.with_values(cpu_read=PRIOR.cpu_read / 2))
    assert halved.tg["cpu_s_per_byte"] == pytest.approx(2 * base.tg["cpu_s_per_byte"])
    assert {k: v for k, v in halved.tg.items() if k != "cpu_s_per_byte"} == \
        {k: v for k, v in base.tg.items() if k != "cpu_s_per_byte"}


def test_a_prior_calibration_answers_for_its_tools_and_threads():
    cal = prior_calibration(profile_from_args("RTX 5080", "ddr5-6000x2", 8), engine="mainline", device="CUDA0",
                            tools={"llama-bench": 8})
    assert cal.constants_for("llama-bench", 8) is not None
    assert cal.constants_for("llama-bench", 4) is None and cal.constants_for("llama-server", 8) is None
    assert cal.created_at == "prior" and "RTX 5080" in cal.host["profile"]


def _published():
    import importlib.util
    import sys
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "published.py"
    spec = importlib.util.spec_from_file_location("published", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_published_table_is_predicted_and_a_fit_on_it_comes_closer(tmp_path):
    published = _published()
    table_file = tmp_path / "box.yaml"
    table_file.write_text(
        "source: made up\nmodel: small\nengine: mainline\ntool: llama-bench\nmmap: false\n"
        "hardware: {gpu: RTX 4090, ram: ddr5-6000x2, cores: 16}\nrows:\n"
        "  - {strategy: cpu-moe, params: {}, ubatch: 512, pp_tokens: 512, pp_tps: [900], tg_tps: [30]}\n"
        "  - {strategy: first-n-experts, params: {n: 8}, ubatch: 512, pp_tokens: 512, pp_tps: [1200], "
        "tg_tps: [45]}\n")
    table = published.load_table(table_file)
    assert table.assumptions == [] and [r.kind for r in table.rows] == ["pp", "tg", "pp", "tg"]
    assert all(r.quantities.pinned for r in table.rows)          # mainline without mmap: CUDA_Host buffers
    table_file.write_text(table_file.read_text().replace("mmap: false\n", ""))
    defaulted = published.load_table(table_file)
    assert any("mmap not given" in a for a in defaulted.assumptions)
    assert not any(r.quantities.pinned for r in defaulted.rows)      # mainline's default, mmap: pageable
    prior = published.predicted(table, PRIOR)
    cpu_moe_tg, first_n_tg = prior[1], prior[3]
    assert first_n_tg > cpu_moe_tg          # fewer expert bytes read from RAM per token
    fitted = published.predicted(table, published.fit([table]))

    def error(values):
        return sum(abs(v / r.tps - 1) for r, v in zip(table.rows, values))
    assert error(fitted) < error(prior)


def test_predict_on_a_described_box(tmp_path):
    """`moebench predict ... --gpu --ram --cores` (or --hardware FILE): no engine, no calibration, no model
    written; more experts on the GPU reads less from RAM per token; half a box is a one-line error."""
    import json

    from tests.conftest import run_cli

    def tg(strategy, *params, box=("--gpu", "RTX 3090", "--ram", "ddr4-3600x2", "--cores", "12")):
        found = run_cli("predict", "synth:qwen3-30b-a3b", strategy, *params, *box, "--json",
                        env={"MOEBENCH_CACHE": str(tmp_path / "empty-cache")})
        assert found.returncode == 0, found.stderr
        result = json.loads(found.stdout)
        assert result["hardware"]["gpu"]["name"] == "RTX 3090" and "prior" in result["constants"]
        return next(t["predicted_tps"] for t in result["tests"] if t["test"].startswith("tg"))

    assert tg("first-n-experts", "n=24") > tg("cpu-moe")
    profile = tmp_path / "box.yaml"
    profile.write_text("gpu: RTX 3090\nram: ddr4-3600x2\ncores: 12\n")
    assert tg("cpu-moe", box=("--hardware", str(profile))) == tg("cpu-moe")
    half = run_cli("predict", "synth:qwen3-30b-a3b", "cpu-moe", "--gpu", "RTX 3090")
    assert half.returncode == 2 and "needs all of --gpu, --ram and --cores" in half.stderr
    assert not (tmp_path / "empty-cache" / "models").exists()


def test_the_shipped_prior_is_the_stored_fit():
    """PRIOR is what benchmarks/published.py --write stored: its efficiencies, with the tables, date and
    residuals beside them."""
    from harness.perf.priors import FIT_FILE, GUESS, PRIOR_FIT, load_fit

    assert FIT_FILE.is_file()
    eff, record = load_fit()
    assert eff == PRIOR and record == PRIOR_FIT and eff != GUESS
    assert record["date"] and len(record["fitted_on"]) >= 4
    assert {"table", "row", "test", "error_pct"} <= set(record["residuals"][0])
    assert load_fit(FIT_FILE.with_name("absent.json")) == (GUESS, {})


def _qwen36_pp(strategy, eff=GUESS_EFF, *, n=20, dialect="mainline", mmap=True, ubatch=512):
    from harness.models.inspect import inspect_preset
    from harness.perf.described import DescribedTest, described_layout, predict_described
    from strategies.registry import get_strategy

    model = inspect_preset("qwen3.6-35b-a3b")
    box = profile_from_args("RTX 3090", "ddr5-6000x2", 16)
    s = get_strategy(strategy)
    layout = described_layout(s.place(model, s.Params(n=n)), dialect=dialect)
    return predict_described(model, layout, DescribedTest("pp", 2048, 0, ubatch), box, eff, mmap=mmap).prediction


def test_uploads_cost_their_bytes_and_waits():
    """A prompt with RAM-held experts: fewer experts touched per micro-batch uploads fewer bytes (faster); a
    dearer wait per upload slows it."""
    base = _qwen36_pp("first-n-experts")
    assert base.terms_s["upload_bytes"] > 0 and base.terms_s["upload_s"] > 0
    assert _qwen36_pp("first-n-experts", GUESS_EFF.with_values(routing_draws=0.02)).tps > base.tps
    assert _qwen36_pp("first-n-experts", GUESS_EFF.with_values(upload_s=1e-3)).tps < base.tps


def test_last_n_uploads_fewer_experts_where_routing_concentrates_late():
    """ik PR #2262's mechanism: later layers' routing is more focused, so a micro-batch touches fewer of their
    experts; last-N uploads fewer bytes than first-N at equal VRAM. Without the focus (1) the two tie."""
    focused = GUESS_EFF.with_values(routing_draws=0.05, routing_focus=0.2)
    first, last = _qwen36_pp("first-n-experts", focused), _qwen36_pp("last-n-experts", focused)
    assert last.terms_s["upload_bytes"] < first.terms_s["upload_bytes"] and last.tps > first.tps
    even = focused.with_values(routing_focus=1.0)
    assert _qwen36_pp("last-n-experts", even).tps == pytest.approx(_qwen36_pp("first-n-experts", even).tps,
                                                                    rel=1e-6)


def test_whole_tensor_uploads_without_only_active_experts():
    """ik's -no-ooae: every expert of a RAM-held tensor is copied and no ids are read back."""
    from harness.models.inspect import inspect_preset
    from harness.perf.described import DescribedTest, described_layout, price, quantities
    from strategies.registry import get_strategy

    model = inspect_preset("qwen3.6-35b-a3b")
    box = profile_from_args("RTX 3090", "ddr5-6000x2", 16)
    s = get_strategy("first-n-experts")
    layout = described_layout(s.place(model, s.Params(n=20)), dialect="ik")
    test = DescribedTest("pp", 2048, 0, 2048)          # ik offloads 8-of-256 experts from 1024 tokens
    eff = GUESS_EFF.with_values(routing_draws=0.05)
    active = price(quantities(model, layout, test, pinned=True), model, box, eff)
    whole = price(quantities(model, layout, test, pinned=True, active_experts_only=False), model, box, eff)
    assert whole.terms_s["upload_bytes"] > active.terms_s["upload_bytes"] and whole.terms_s["upload_s"] == 0
    assert active.terms_s["upload_s"] > 0


def test_pageable_host_memory_uploads_slower_than_pinned():
    """Mainline under mmap keeps RAM-held weights in the pageable file mapping (slower uploads); without mmap,
    or ik with tensors overridden to the CPU, they are pinned."""
    from harness.perf.described import pinned_host_weights

    assert not pinned_host_weights("mainline", mmap=True) and pinned_host_weights("mainline", mmap=False)
    assert pinned_host_weights("ik", mmap=True, overrides=True) and not pinned_host_weights("ik", overrides=False)
    pageable, pinned = _qwen36_pp("first-n-experts"), _qwen36_pp("first-n-experts", mmap=False)
    assert pageable.terms_s["upload_bytes"] == pytest.approx(pinned.terms_s["upload_bytes"] / GUESS_EFF.pageable)
    ik = _qwen36_pp("first-n-experts", dialect="ik", ubatch=2048).terms_s["upload_bytes"]
    pinned_2048 = _qwen36_pp("first-n-experts", mmap=False, ubatch=2048).terms_s["upload_bytes"]
    assert ik > 0 and ik == pytest.approx(pinned_2048)


def test_first_vs_last_names_a_tie_or_the_term_that_differs():
    from harness.models.inspect import inspect_preset
    from harness.perf.described import first_vs_last
    from strategies.registry import get_strategy

    model = inspect_preset("qwen3.6-35b-a3b")
    box = profile_from_args("RTX 3090", "ddr5-6000x2", 16)

    def place(name, **params):
        s = get_strategy(name)
        return s.place(model, s.Params(**params))

    settings = {"dialect": "ik", "prompt_tokens": 2048, "gen_tokens": 128, "depth": 0, "ubatch": 2048}
    even = GUESS_EFF.with_values(routing_focus=1.0)
    same = first_vs_last(model, place("first-n-experts", n=22), place("last-n-experts", n=22), box, **settings,
                         eff=even)
    assert all(v["term"] is None and v["last_over_first"] == pytest.approx(1.0) for v in same.values())
    focused = first_vs_last(model, place("first-n-experts", n=22), place("last-n-experts", n=22), box,
                            **settings, eff=GUESS_EFF.with_values(routing_draws=0.05, routing_focus=0.2))
    assert focused["pp"]["term"] == "uploads over PCIe" and focused["pp"]["last_over_first"] > 1
    assert focused["tg"]["term"] is None            # generation uploads nothing
    # fewer RAM-held layers in the second: generation reads fewer bytes from RAM, the prompt uploads fewer
    other = first_vs_last(model, place("first-n-experts", n=22), place("last-n-experts", n=10), box, **settings)
    assert other["tg"]["term"] == "reading weights on the CPU" and other["tg"]["last_over_first"] > 1
    assert other["pp"]["term"] == "uploads over PCIe" and other["pp"]["term_s_saved_by_last"] > 0


def test_generation_without_cuda_graphs_pays_a_launch_per_gpu_segment():
    """ik with RAM-held experts runs generation without CUDA graphs: each GPU segment of the pass launches its
    kernels one by one (`launch_s`); mainline keeps a graph per split, and ik wholly on the GPU keeps its graph."""
    from harness.models.inspect import inspect_preset
    from harness.perf.described import DescribedTest, described_layout, predict_described, uses_cuda_graphs
    from strategies.registry import get_strategy

    model = inspect_preset("qwen3.6-35b-a3b")
    box = profile_from_args("RTX 3090", "ddr5-6000x2", 16)
    s = get_strategy("first-n-experts")
    placement = s.place(model, s.Params(n=20))
    assert not uses_cuda_graphs("ik", placement) and uses_cuda_graphs("mainline", placement)
    assert uses_cuda_graphs("ik", get_strategy("all-gpu").place(model, get_strategy("all-gpu").Params()))

    def tg(dialect, eff=GUESS_EFF):
        layout = described_layout(placement, dialect=dialect)
        return predict_described(model, layout, DescribedTest("tg", 128), box, eff)

    ik, mainline = tg("ik"), tg("mainline")
    assert "launch_s" not in mainline.prediction.terms_s
    assert ik.workload.crossings > 0
    assert ik.prediction.terms_s["launch_s"] == pytest.approx(ik.workload.crossings / 2 * GUESS_EFF.launch_s)
    assert tg("ik", GUESS_EFF.with_values(launch_s=2 * GUESS_EFF.launch_s)).tps < ik.tps


def test_skewed_routing_touches_fewer_experts_and_uniform_is_the_old_share():
    """Expert popularity falling as rank^-skew: at skew 0 the uniform share (`experts_touched`); with skew a
    micro-batch touches fewer experts at the same tokens, and more with more tokens."""
    from harness.models.inspect import inspect_preset
    from harness.perf.described import touched_share
    from harness.perf.workload import experts_touched

    model = inspect_preset("qwen3.6-35b-a3b")
    assert touched_share(model, 256, 1.0, 0.0) == pytest.approx(experts_touched(model, 256))
    assert touched_share(model, 256, 1.0, 1.0) < touched_share(model, 256, 1.0, 0.0)
    assert touched_share(model, 256, 1.0, 1.0) < touched_share(model, 2048, 1.0, 1.0) <= 1.0
