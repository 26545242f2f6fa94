"""Numbers that reproduce: the process as the unit of replication, interleaved rounds, adaptive stopping, the
CPU budget and the stability checks (pure logic; the real engines run in test_runs_end_to_end and
test_resume)."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time

import pytest

from harness import procs
from harness.config import Until
from harness.cpus import CpuBudget, cpu_list, cpu_budget
from harness.intervals import confidence_interval, interval, noise_verdict, t_critical
from harness.runner.schedule import History, Schedule, history_from_rows
from harness.runner.stability import outliers, row_warnings
from harness.warnings import KINDS, messages


# -- intervals ---------------------------------------------------------------------------------------------------

def test_t_critical_is_students_t_not_a_table():
    # reference values of the two-sided 95% quantile (any statistics table)
    assert t_critical(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_critical(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_critical(35) == pytest.approx(2.0301, abs=1e-4)  # the old hand table said 2.021
    assert math.isnan(t_critical(0))


def test_interval_uses_processes_once_there_are_two():
    one = interval([100.0], [99.0, 100.0, 101.0])
    assert one.unit == "repetitions" and one.n == 3
    many = interval([100.0, 110.0, 90.0], [99.0, 100.0, 101.0])
    assert many.unit == "processes" and many.n == 3
    half = 4.3027 * 10.0 / math.sqrt(3) / 100  # on the log scale
    assert many.low == pytest.approx(100 * math.exp(-half), rel=1e-4)
    assert many.high == pytest.approx(100 * math.exp(half), rel=1e-4)
    assert many.cv_pct == pytest.approx(10.0)
    assert many.half_width_pct == pytest.approx(100 * math.sinh(half), rel=1e-4)
    assert math.isnan(interval([5.0]).low)


def test_noise_verdict_is_the_one_noise_rule():
    assert noise_verdict(10, 12, 5, 9) == "a"
    assert noise_verdict(5, 9, 10, 12) == "b"
    assert noise_verdict(5, 10, 9, 12) == "tie"
    assert noise_verdict(math.nan, 1, 0, 1) == "untested"


# -- CPU budget --------------------------------------------------------------------------------------------------

def test_budget_gives_the_rig_disjoint_cpu_sets():
    rig = cpu_budget(True, (0, 1))
    assert rig.engine_cpus == (0,) and rig.rpc_cpus == (1,)
    assert rig.engine_threads == 1 and rig.rpc_threads == 1
    assert not set(rig.engine_cpus) & set(rig.rpc_cpus)
    alone = cpu_budget(False, (0, 1))
    assert alone.engine_cpus == (0, 1) and alone.rpc_cpus is None and alone.engine_threads == 2
    single = cpu_budget(True, (0,))
    assert single.engine_cpus == single.rpc_cpus == (0,)


def test_budget_defaults_and_oversubscription():
    budget = CpuBudget((0,), (1,))
    assert budget.threads(None) == 1 and budget.threads(3) == 3
    assert budget.oversubscribed(1) is None
    assert "3 threads on 1 CPUs" in budget.oversubscribed(3)
    assert cpu_list((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8" and cpu_list(()) == ""


def test_a_child_runs_only_on_its_cpus():
    cpus = (sorted(os.sched_getaffinity(0))[-1],)
    proc = procs.start([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"], cpus=cpus)
    out, _ = proc.communicate(timeout=30)
    procs.stop(proc)
    assert out.decode().strip() == str(list(cpus))


# -- schedule ----------------------------------------------------------------------------------------------------

def _drive(schedule: Schedule, measure) -> list[tuple[int, str]]:
    """Run a schedule with a fake measurement; returns (round, id) in the order run."""
    ran = []
    for round_, ids in schedule.rounds():
        for cid in ids:
            ran.append((round_, cid))
            status, value = measure(cid, round_)
            schedule.history[cid].record(round_, status, "tg", value, [value])
    return ran


def test_rounds_interleave_in_a_new_seeded_order_each_round():
    ids = [f"c{i}" for i in range(8)]
    ran = _drive(Schedule(ids, 3, None, seed=7), lambda cid, r: ("ok", 100.0))
    rounds = [[cid for r, cid in ran if r == k] for k in range(3)]
    assert [r for r, _ in ran] == sorted(r for r, _ in ran)  # every round finishes before the next begins
    assert all(sorted(r) == ids for r in rounds)
    assert len({tuple(r) for r in rounds}) == 3  # a new order each round
    again = _drive(Schedule(ids, 3, None, seed=7), lambda cid, r: ("ok", 100.0))
    assert again == ran  # the same on every run (and so on resume)
    fixed = _drive(Schedule(ids, 2, None, shuffle=False), lambda cid, r: ("ok", 1.0))
    assert [cid for _, cid in fixed] == ids + ids


def test_failed_and_skipped_configurations_run_once():
    ran = _drive(Schedule(["ok", "bad"], 3, None), lambda cid, r: ("ok", 1.0) if cid == "ok" else ("failed", None))
    assert [cid for _, cid in ran].count("bad") == 1 and [cid for _, cid in ran].count("ok") == 3


def test_resume_runs_only_the_missing_rounds():
    rows = [{"config_id": "a", "process_index": "0", "status": "ok", "test": "tg", "tps_mean": "10",
             "tps_samples": "[10]"},
            {"config_id": "a", "process_index": "1", "status": "ok", "test": "tg", "tps_mean": "11",
             "tps_samples": "[11]"},
            {"config_id": "b", "process_index": "", "status": "ok", "test": "tg", "tps_mean": "5",  # schema 1
             "tps_samples": "[5, 6]"},
            {"config_id": "c", "process_index": "0", "status": "skipped: predicted-oom", "test": "",
             "tps_mean": "", "tps_samples": ""}]
    history = history_from_rows(rows)
    assert history["a"].means["tg"] == [10.0, 11.0] and history["b"].repetitions["tg"] == [5.0, 6.0]
    schedule = Schedule(["a", "b", "c"], 3, None, history=history)
    ran = _drive(schedule, lambda cid, r: ("ok", 12.0))
    assert sorted(ran) == [(1, "b"), (2, "a"), (2, "b")]
    assert schedule.progress_counts() == (3 + 3 + 1, 7)


def test_adaptive_rounds_only_for_wide_intervals_until_the_limits():
    noisy = iter([100, 140, 70, 130, 80, 120, 90, 110, 95, 105] * 3)
    ran = _drive(Schedule(["steady", "noisy"], 3, Until(ci_pct=3, max_processes=6)),
                 lambda cid, r: ("ok", 100.0 + r * 0.01 if cid == "steady" else float(next(noisy))))
    counts = {cid: sum(1 for _, c in ran if c == cid) for cid in ("steady", "noisy")}
    assert counts == {"steady": 3, "noisy": 6}  # steady met ±3% after 3; noisy stopped at max_processes

    clock = iter(range(0, 10_000, 60))  # a minute per look at the clock
    timed = Schedule(["noisy"], 2, Until(ci_pct=0.001, max_processes=50, max_minutes=5), clock=lambda: next(clock))
    ran = _drive(timed, lambda cid, r: ("ok", 100.0 + (r % 2) * 10))
    assert 2 < len(ran) < 50  # stopped by max_minutes


def test_history_interval_counts_processes():
    h = History()
    for r, v in enumerate([100.0, 104.0, 96.0]):
        h.record(r, "ok", "pp512", v, [v - 1, v + 1])
    ci = h.interval("pp512")
    assert ci.unit == "processes" and ci.n == 3 and ci.mean == pytest.approx(100.0)
    assert h.widest_pct() == pytest.approx(ci.half_width_pct)


# -- stability checks --------------------------------------------------------------------------------------------

def test_outliers_need_a_real_departure():
    assert outliers([100, 101, 99, 140]) == [140]
    assert outliers([100, 105, 110]) == []
    assert outliers([100, 100, 100, 104]) == []  # MAD 0, but only 4% off
    assert outliers([1, 2]) == []


def test_each_stability_check_says_its_name():
    steady = interval([100.0, 101.0, 99.0])
    clean = row_warnings(repetitions=[100, 101, 99], sample_ms=250, ci=steady, process_means=[100, 101, 99],
                         oversubscribed=None, telemetry={"telemetry_samples": 12, "other_cpu_pct_mean": 5,
                                                         "swap_io_pages_s_peak": 0, "gpu_throttle_reasons": ""},
                         n_cpus=2)
    assert clean == []
    noisy = interval([100.0, 130.0, 80.0])
    found = row_warnings(
        repetitions=[100, 101, 99, 160], sample_ms=40, ci=noisy, process_means=[100, 130, 80],
        oversubscribed="oversubscribed: 3 threads on 1 CPUs (0)",
        telemetry={"telemetry_samples": 3, "other_cpu_pct_mean": 90, "swap_io_pages_s_peak": 12.0,
                   "gpu_throttle_reasons": "hw_thermal_slowdown"}, n_cpus=2)
    text = messages(found)
    # every other kind, each with a remedy; telemetry from few samples is the sweep's note, not a row's warning
    assert set(KINDS) - {w.kind for w in found} == {"outlier process", "telemetry"}
    assert all(w.remedy for w in found)
    for expected in ("cv 24% >= 10% across 3 processes", "samples 40 ms < 100 ms", "oversubscribed",
                     "outlier repetition 160.0", "swap activity: 12 pages/s", "other processes used 45% of the CPU",
                     "GPU throttled: hw_thermal_slowdown"):
        assert expected in text, (expected, text)


def test_confidence_interval_of_process_means_matches_scipy():
    from scipy import stats

    values = [812.0, 846.5, 829.1, 801.7, 838.0]
    mean, low, high = confidence_interval(values)
    mean_ = statistics.fmean(values)  # the t interval of log(mean) by the delta method: sem / mean
    ref = stats.t.interval(0.95, len(values) - 1, loc=math.log(mean_), scale=stats.sem(values) / mean_)
    assert (low, high) == pytest.approx(tuple(math.exp(x) for x in ref))


def test_an_interval_of_two_noisy_processes_is_never_below_zero():
    mean, low, high = confidence_interval([400.0, 1600.0])  # t(0.975, 1) = 12.7: the linear one reached -6,600
    assert mean == 1000.0 and 0 < low < 100 < 10_000 < high
    assert low * high == pytest.approx(mean ** 2)  # symmetric on the log scale
