"""Telemetry: NVML against a scripted fake `pynvml` (the boundary: this machine has no GPU), the attribution
rules on hand-made series, the host's /proc readings against hand-written /proc files and a real busy loop, and
psutil sampling of real llama-bench runs (and its RPC server on loopback)."""

from __future__ import annotations

import gzip
import csv
import os
import statistics
import subprocess
import sys
import time
from types import ModuleType, SimpleNamespace

import psutil
import pynvml as real_nvml
import pytest

from harness import procs
from harness.telemetry import TELEMETRY_COLUMNS, Sampler, open_nvml, summarize_phase
from harness.telemetry import host as host_module
from harness.telemetry.host import HostSource
from harness.telemetry.process import ProcessTreeSource
from harness.units import MIB


# -- a scripted fake pynvml ------------------------------------------------------------------------------------


class FakeGpu:
    """One GPU whose readings depend on the phase the test sets; the energy counter integrates `energy_w`
    over real time (it may differ from the reported power, as the 1 s power average does on real GPUs)."""

    PHASES = {
        "idle": dict(used_mib=500, util=0, rx_kb_s=0, tx_kb_s=0, power_mw=60_000, energy_w=50.0),
        "pp": dict(used_mib=6000, util=90, rx_kb_s=512_000, tx_kb_s=10_240, power_mw=250_000, energy_w=200.0),
        "tg": dict(used_mib=6100, util=40, rx_kb_s=102_400, tx_kb_s=5_120, power_mw=150_000, energy_w=120.0),
        "still": dict(used_mib=6000, util=90, rx_kb_s=512_000, tx_kb_s=10_240, power_mw=250_000, energy_w=0.0),
    }

    def __init__(self, fail: dict[str, BaseException] | None = None, reasons: int = 0):
        self.fail = dict(fail or {})
        self.reasons = reasons  # the clock event reasons bitmask the GPU reports now
        self.calls: dict[str, int] = {}
        self._phase, self._since, self._energy_j = "idle", time.monotonic(), 1000.0

    def set(self, phase: str) -> None:
        now = time.monotonic()
        self._energy_j += self.PHASES[self._phase]["energy_w"] * (now - self._since)
        self._phase, self._since = phase, now

    def read(self, metric: str, constant=None):
        """The reading `metric` now (or `constant`), unless the test made that metric (or "*": all) fail."""
        self.calls[metric] = self.calls.get(metric, 0) + 1
        if metric in self.fail or "*" in self.fail:
            raise self.fail.get(metric) or self.fail["*"]
        if metric == "energy_mj":
            watts = self.PHASES[self._phase]["energy_w"]
            return int(1000 * (self._energy_j + watts * (time.monotonic() - self._since)))
        return self.PHASES[self._phase].get(metric, constant)


def nvml_error(code: int) -> BaseException:
    return real_nvml.NVMLError(code)  # pynvml maps the code to its subclass (NVMLError_NotSupported, ...)


def fake_pynvml(gpus: list[FakeGpu], init_error: BaseException | None = None,
                reasons_api: tuple[str, ...] = ("Event",)) -> ModuleType:
    """`reasons_api`: which of nvmlDeviceGetCurrentClocks{Event,Throttle}Reasons the fake has."""
    nv = ModuleType("pynvml")
    for name in dir(real_nvml):  # the real error classes and constants
        if name.startswith(("NVMLError", "NVML_")):
            setattr(nv, name, getattr(real_nvml, name))
    nv.shutdowns = 0

    def init():
        if init_error is not None:
            raise init_error

    def shutdown():
        nv.shutdowns += 1

    def throughput(h, counter):
        return gpus[h].read("tx_kb_s" if counter == real_nvml.NVML_PCIE_UTIL_TX_BYTES else "rx_kb_s")

    def clock(h, kind):
        return gpus[h].read("clock", 1980 if kind == real_nvml.NVML_CLOCK_SM else 2619)

    nv.nvmlInit, nv.nvmlShutdown = init, shutdown
    nv.nvmlDeviceGetCount = lambda: len(gpus)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=gpus[h].read("used_mib") * MIB, total=24576 * MIB)
    nv.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=gpus[h].read("util"), memory=gpus[h].read("mu", 7))
    nv.nvmlDeviceGetPcieThroughput = throughput
    nv.nvmlDeviceGetCurrPcieLinkGeneration = lambda h: gpus[h].read("gen", 4)
    nv.nvmlDeviceGetCurrPcieLinkWidth = lambda h: gpus[h].read("width", 16)
    nv.nvmlDeviceGetMaxPcieLinkGeneration = lambda h: 5
    nv.nvmlDeviceGetMaxPcieLinkWidth = lambda h: 16
    nv.nvmlDeviceGetPowerUsage = lambda h: gpus[h].read("power_mw")
    nv.nvmlDeviceGetTotalEnergyConsumption = lambda h: gpus[h].read("energy_mj")
    nv.nvmlDeviceGetClockInfo = clock
    nv.nvmlDeviceGetTemperature = lambda h, sensor: gpus[h].read("temp", 61)
    for api in reasons_api:
        setattr(nv, f"nvmlDeviceGetCurrentClocks{api}Reasons",
                lambda h, api=api: gpus[h].read(f"reasons_{api}", gpus[h].reasons))
    return nv


@pytest.fixture
def install_fake(monkeypatch):
    def install(*gpus: FakeGpu, init_error: BaseException | None = None,
                reasons_api: tuple[str, ...] = ("Event",)) -> ModuleType:
        nv = fake_pynvml(list(gpus), init_error, reasons_api)
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        return nv
    return install


def no_process():
    return None


# -- NVML -------------------------------------------------------------------------------------------------------


def test_nvml_units_are_converted(install_fake):
    gpu = FakeGpu()
    install_fake(gpu)
    gpu.set("still")
    gpu._energy_j = 123456.789  # and it stays there
    source = open_nvml()
    row = source.sample()
    source.close()
    assert row["gpu0_vram_used_mib"] == 6000 and row["gpu0_vram_total_mib"] == 24576
    assert row["gpu0_pcie_rx_mib_s"] == 500.0 and row["gpu0_pcie_tx_mib_s"] == 10.0  # KB/s / 1024
    assert row["gpu0_power_w"] == 250.0  # mW / 1000
    assert row["gpu0_energy_j"] == pytest.approx(123456.789, abs=0.002)  # mJ / 1000
    assert (row["gpu0_pcie_gen"], row["gpu0_pcie_width"], row["gpu0_pcie_gen_max"], row["gpu0_pcie_width_max"]) \
        == (4, 16, 5, 16)
    assert (row["gpu0_sm_clock_mhz"], row["gpu0_mem_clock_mhz"], row["gpu0_temp_c"]) == (1980, 2619, 61)
    assert row["gpu0_gpu_util_pct"] == 90 and row["gpu0_mem_util_pct"] == 7
    assert row["gpu0_clock_event_reasons"] == 0


def _two_phases(s: Sampler, gpus: list[FakeGpu], tg_windows: int = 2) -> tuple[float, list[float]]:
    """pp once, then tg `tg_windows` times, with idle margins; returns the pp and tg window lengths."""
    def run(phase: str, seconds: float) -> float:
        for g in gpus:
            g.set(phase)
        time.sleep(0.05)  # margin: no sample straddles a phase change
        start = s.now()
        time.sleep(seconds)
        end = s.now()
        time.sleep(0.05)
        for g in gpus:
            g.set("idle")
        s.mark_phase(phase, start, end, tokens=512 if phase == "pp" else 32)
        return end - start

    pp = run("pp", 0.4)
    tg = [run("tg", 0.3) for _ in range(tg_windows)]
    return pp, tg


def test_phase_summaries_from_scripted_gpus_energy_counter(install_fake):
    gpu = FakeGpu()
    install_fake(gpu)
    with Sampler(no_process, hz=100) as s:
        pp_s, tg_s = _two_phases(s, [gpu])
    pp, tg = s.summarize("pp"), s.summarize("tg")
    assert s.warnings == [] and s.gpu_count == 1
    assert pp["pcie_rx_mib_s_mean"] == 500.0 and pp["pcie_rx_mib_s_peak"] == 500.0
    assert pp["pcie_tx_mib_s_mean"] == 10.0 and tg["pcie_rx_mib_s_mean"] == 100.0 and tg["pcie_tx_mib_s_peak"] == 5.0
    assert pp["pcie_mib_per_token"] == pytest.approx(510.0 * pp_s / 512)
    assert tg["pcie_mib_per_token"] == pytest.approx(105.0 * sum(tg_s) / 64)  # two windows, 32 tokens each
    assert pp["vram_peak_mib"] == 6000 and tg["vram_peak_mib"] == 6100 and tg["vram_used_mean_mib"] == 6100
    assert pp["gpu_util_pct_mean"] == 90 and pp["power_w_mean"] == 250.0
    # the energy counter (200 W) wins over the reported power (250 W)
    assert pp["joules_per_token"] == pytest.approx(200.0 * pp_s / 512, rel=0.01)
    assert tg["joules_per_token"] == pytest.approx(120.0 * sum(tg_s) / 64, rel=0.01)
    assert pp["telemetry_samples"] >= 20 and pp["rss_peak_mib"] is None  # no process given


def test_power_only_path_when_energy_counter_unsupported(install_fake):
    gpu = FakeGpu(fail={"energy_mj": nvml_error(real_nvml.NVML_ERROR_NOT_SUPPORTED)})
    install_fake(gpu)
    with Sampler(no_process, hz=100) as s:
        pp_s, _ = _two_phases(s, [gpu], tg_windows=1)
    pp = s.summarize("pp")
    assert pp["joules_per_token"] == pytest.approx(250.0 * pp_s / 512)
    assert not any("gpu0_energy_j" in row for row in s.samples)


def test_unsupported_metric_is_switched_off_with_one_warning(install_fake):
    gpu = FakeGpu(fail={"power_mw": nvml_error(real_nvml.NVML_ERROR_NOT_SUPPORTED)})
    install_fake(gpu)
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.2)
    rows = [r for r in s.samples if "gpu0_vram_used_mib" in r]
    assert len(rows) >= 10 and len(rows) == len(s.samples)  # everything else still sampled
    assert not any("gpu0_power_w" in r for r in s.samples)
    assert len(s.warnings) == 1 and "power" in s.warnings[0] and "NotSupported" in s.warnings[0]
    assert gpu.calls["power_mw"] == 1  # not asked again
    summary = summarize_phase(s.samples, [(0.0, s.now())], 100)
    assert summary["power_w_mean"] is None and summary["vram_peak_mib"] == 500


@pytest.mark.parametrize("error", [real_nvml.NVML_ERROR_GPU_IS_LOST, real_nvml.NVML_ERROR_UNKNOWN])
def test_gpu_lost_mid_run(install_fake, error):
    healthy, dying = FakeGpu(), FakeGpu()
    install_fake(healthy, dying)
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.15)
        lost_at = s.now()
        dying.fail["*"] = nvml_error(error)  # every call fails from now on
        time.sleep(0.15)
    before = [r for r in s.samples if r["t_s"] < lost_at - 0.02]
    after = [r for r in s.samples if r["t_s"] > lost_at + 0.02]
    assert before and after
    assert all("gpu1_vram_used_mib" in r for r in before)
    assert not any(k.startswith("gpu1_") for r in after for k in r)
    assert all("gpu0_vram_used_mib" in r for r in after)  # the other GPU goes on
    assert len(s.warnings) == 1 and "GPU 1" in s.warnings[0]


@pytest.mark.parametrize("how", ["no module", "no library", "no GPU"])
def test_no_nvml_means_no_gpu_columns_and_no_error(install_fake, monkeypatch, how):
    if how == "no module":
        monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    elif how == "no library":
        install_fake(FakeGpu(), init_error=nvml_error(real_nvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    else:
        install_fake()
    with Sampler(os.getpid(), hz=50) as s:
        time.sleep(0.1)
    assert s.gpu_count == 0 and s.warnings == []
    assert s.samples and not any(k.startswith("gpu") for r in s.samples for k in r)
    assert all("rss_mib" in r and "ram_available_mib" in r for r in s.samples[1:])


def test_sampler_closes_only_the_nvml_it_opened(install_fake):
    nv = install_fake(FakeGpu())
    with Sampler(no_process, hz=50):
        pass
    assert nv.shutdowns == 1
    shared = open_nvml()
    with Sampler(no_process, hz=50, nvml=shared) as s:
        time.sleep(0.05)
    assert nv.shutdowns == 1 and s.samples[-1]["gpu0_vram_used_mib"] == 500
    shared.close()
    assert nv.shutdowns == 2


@pytest.mark.parametrize("apis", [("Event",), ("Throttle",), ("Event", "Throttle")])
def test_clock_event_reasons_through_either_nvml_call(install_fake, apis):
    gpu = FakeGpu(reasons=0x1)  # idle: low clocks, but not throttled
    install_fake(gpu, reasons_api=apis)
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.05)
        start = s.now()
        time.sleep(0.1)
        gpu.reasons = 0x4 | 0x2  # software power cap (and clocks set by the user: not throttling)
        time.sleep(0.1)
        gpu.reasons = 0x40
        time.sleep(0.1)
        end = s.now()
        gpu.reasons = 0x20
        time.sleep(0.05)
    assert s.warnings == []
    used = "Event" if "Event" in apis else "Throttle"  # the new name wins where both exist
    assert gpu.calls[f"reasons_{used}"] == len(s.samples)
    assert not any(k.startswith("reasons_") and k != f"reasons_{used}" for k in gpu.calls)
    assert {r["gpu0_clock_event_reasons"] for r in s.samples} == {0x1, 0x6, 0x40, 0x20}
    s.mark_phase("run", start, end, tokens=None)
    assert s.summarize("run")["gpu_throttle_reasons"] == "sw_power_cap+hw_thermal_slowdown"
    s.mark_phase("before", 0.0, start - 0.01, tokens=None)
    assert s.summarize("before")["gpu_throttle_reasons"] == ""  # only gpu_idle: not throttling


def test_no_clock_event_reasons_call_is_one_warning_and_no_column(install_fake):
    gpu = FakeGpu(reasons=0x4)
    install_fake(gpu, reasons_api=())
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.1)
    assert len(s.warnings) == 1 and "clock_events" in s.warnings[0] and "ClocksEventReasons" in s.warnings[0]
    assert not any("gpu0_clock_event_reasons" in r for r in s.samples)
    assert all("gpu0_vram_used_mib" in r for r in s.samples)  # the rest goes on
    summary = summarize_phase(s.samples, [(0.0, s.now())], 1)
    assert summary["gpu_throttle_reasons"] is None and summary["vram_peak_mib"] == 500


def test_unsupported_clock_event_reasons_are_switched_off(install_fake):
    gpu = FakeGpu(fail={"reasons_Event": nvml_error(real_nvml.NVML_ERROR_NOT_SUPPORTED)})
    install_fake(gpu)
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.1)
    assert len(s.warnings) == 1 and "clock_events" in s.warnings[0] and "NotSupported" in s.warnings[0]
    assert gpu.calls["reasons_Event"] == 1 and not any("gpu0_clock_event_reasons" in r for r in s.samples)


# -- attribution rules ------------------------------------------------------------------------------------------


def test_attribution_rules_on_a_hand_made_series():
    rows = [{"t_s": float(t), "rss_mib": 10.0 * (t + 1), "ram_available_mib": 1000.0 - t,
             "gpu0_vram_used_mib": 100.0 + t, "gpu1_vram_used_mib": 200.0,
             "gpu0_pcie_rx_mib_s": 1.0, "gpu1_pcie_rx_mib_s": 2.0,
             "gpu0_power_w": 999.0, "gpu0_energy_j": 5000.0 + 100.0 * t} for t in range(11)]
    inside = summarize_phase(rows, [(0.5, 2.5)], tokens=10)
    assert inside["telemetry_samples"] == 2 and inside["rss_peak_mib"] == 30.0
    assert inside["vram_peak_mib"] == 200.0  # the fullest GPU
    assert inside["pcie_rx_mib_s_mean"] == 3.0  # summed over GPUs
    assert inside["ram_available_min_mib"] == 998.0
    assert inside["pcie_mib_per_token"] is None  # no TX: no per-token figure
    assert inside["joules_per_token"] == pytest.approx(100.0 * 2.0 / 10)  # counter interpolated at 0.5 and 2.5
    assert inside["cpu_pct_mean"] is None and inside["loopback_mib_s_mean"] is None and inside["uss_peak_mib"] is None
    short = summarize_phase(rows, [(3.2, 3.4)], tokens=10)  # no sample inside: neighbours 3 and 4
    assert short["telemetry_samples"] == 0 and short["rss_peak_mib"] == 50.0
    assert short["joules_per_token"] == pytest.approx(100.0 * 0.2 / 10)
    past_end = summarize_phase(rows, [(9.5, 11.5)], tokens=1)  # the counter's rate over what is covered
    assert past_end["joules_per_token"] == pytest.approx(200.0)
    assert summarize_phase(rows, [], 10) == dict.fromkeys(TELEMETRY_COLUMNS)
    assert summarize_phase(rows, [(0, 10)], tokens=0)["joules_per_token"] is None
    uneven = [{"t_s": 0.0}, {"t_s": 1.0, "loopback_mib_s": 10.0, "cpu_pct": 200.0},
              {"t_s": 3.0, "loopback_mib_s": 1.0, "cpu_pct": 50.0}]
    lo = summarize_phase(uneven, [(0.0, 3.0)], tokens=6)  # each rate weighted by the interval it covers
    assert lo["loopback_mib_s_mean"] == pytest.approx(4.0) and lo["loopback_mib_per_token"] == pytest.approx(2.0)
    assert lo["cpu_pct_mean"] == pytest.approx(100.0)
    assert summarize_phase(uneven, [(2.0, 3.0)], 1)["cpu_pct_mean"] == pytest.approx(50.0)
    reset = [dict(r, gpu0_energy_j=10.0 if r["t_s"] > 5 else r["gpu0_energy_j"]) for r in rows]
    assert summarize_phase(reset, [(4.0, 7.0)], 3)["joules_per_token"] == pytest.approx(999.0)  # power path


def test_noise_figures_on_a_hand_made_series():
    rows = [{"t_s": 0.0, "host_cpu_busy_pct": 999.0, "proc_count": 1.0},  # no interval before it: never counts
            {"t_s": 1.0, "host_cpu_busy_pct": 300.0, "proc_count": 1.0, "cpu_pct": 100.0, "swap_io_pages_s": 5.0,
             "gpu0_clock_event_reasons": 0x1, "gpu1_clock_event_reasons": 0x4},
            {"t_s": 3.0, "host_cpu_busy_pct": 150.0, "proc_count": 2.0, "cpu_pct": 200.0, "swap_io_pages_s": 40.0,
             "gpu0_clock_event_reasons": 0x40 | 0x2},
            {"t_s": 4.0, "host_cpu_busy_pct": 80.0, "swap_io_pages_s": 0.0,  # no tree: all of it is other
             "gpu0_clock_event_reasons": 0x0},
            {"t_s": 5.0, "host_cpu_busy_pct": 400.0, "proc_count": 1.0, "swap_io_pages_s": 1000.0,  # no baseline
             "gpu0_clock_event_reasons": 0x800 | 0x20 | 0x100}]
    whole = summarize_phase(rows, [(0.0, 4.0)], tokens=None)
    # (200 * 1 s - 50 * 2 s + 80 * 1 s) / 4 s: signed per sample, not cut at 0 sample by sample (that gives 70)
    assert whole["other_cpu_pct_mean"] == pytest.approx(45.0)
    assert whole["swap_io_pages_s_peak"] == 40.0
    assert whole["gpu_throttle_reasons"] == "sw_power_cap+hw_thermal_slowdown"  # OR over GPUs and samples
    part = summarize_phase(rows, [(0.5, 2.0)], tokens=None)
    assert part["other_cpu_pct_mean"] == pytest.approx((200 * 0.5 - 50 * 1.0) / 1.5)
    assert part["swap_io_pages_s_peak"] == 40.0  # t=3's rate covers (1, 3], which overlaps the window
    assert part["gpu_throttle_reasons"] == "sw_power_cap"  # only t=1 inside: GPU 0 idle, GPU 1 power-capped
    assert summarize_phase(rows, [(1.0, 3.0)], None)["other_cpu_pct_mean"] == 0.0  # -50: never below 0
    assert summarize_phase(rows, [(4.2, 4.8)], None)["other_cpu_pct_mean"] == pytest.approx(80.0)  # t=5 skipped
    last = summarize_phase(rows, [(4.5, 5.0)], None)
    assert last["swap_io_pages_s_peak"] == 1000.0
    assert last["gpu_throttle_reasons"] == "sw_thermal_slowdown+display_clock_setting+0x800"
    assert summarize_phase(rows, [(3.6, 3.8)], None)["gpu_throttle_reasons"] == "hw_thermal_slowdown"  # neighbours
    bare = [{k: v for k, v in r.items() if not k.startswith(("gpu", "host", "swap"))} for r in rows]
    empty = summarize_phase(bare, [(0.0, 5.0)], None)
    assert empty["other_cpu_pct_mean"] is None and empty["swap_io_pages_s_peak"] is None
    assert empty["gpu_throttle_reasons"] is None and empty["cpu_pct_mean"] is not None


# -- sampler behaviour ------------------------------------------------------------------------------------------


def test_slow_samples_delay_and_never_burst(install_fake):
    gpu = FakeGpu()
    install_fake(gpu)
    slow = {"on": True}
    original = gpu.read

    def read(metric):
        if slow["on"] and metric == "used_mib":
            time.sleep(0.03)  # longer than the 10 ms period
        return original(metric)

    gpu.read = read
    with Sampler(no_process, hz=100) as s:
        time.sleep(0.3)
        slow["on"] = False
        switched = s.now()
        time.sleep(0.3)
    slow_rows = [r for r in s.samples if r["t_s"] < switched]
    assert len(slow_rows) <= 0.3 / 0.03 + 2
    times = [r["t_s"] for r in s.samples if r["t_s"] > switched][:-1]  # the stop sample comes at once
    gaps = [b - a for a, b in zip(times, times[1:])]
    # steady 10 ms (give or take scheduling), no burst of catch-up samples (that would be ~20 more)
    assert 10 <= len(gaps) <= 0.3 / 0.01 + 2 and statistics.median(gaps) > 0.008


def test_stop_is_idempotent_and_a_failing_root_callback_is_one_warning():
    def root():
        raise RuntimeError("no pid yet")

    s = Sampler(root, hz=100, nvml=False).start()
    time.sleep(0.1)
    s.stop()
    n = len(s.samples)
    s.stop()
    time.sleep(0.05)
    assert len(s.samples) == n >= 5 and len(s.warnings) == 1 and "no pid yet" in s.warnings[0]
    assert 0 < s.cpu_seconds < 0.1
    assert "ram_available_mib" in s.samples[-1]  # host metrics go on without a process


def test_csv_gz_has_the_union_of_columns(tmp_path):
    s = Sampler(os.getpid(), hz=50, nvml=False)
    s._rows.extend([{"t_s": 0.0, "a_mib": 1.5}, {"t_s": 0.1, "b_pct": 2.0}])
    path = s.write_csv_gz(tmp_path / "t" / "telemetry.csv.gz")
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{"t_s": "0.0", "a_mib": "1.5", "b_pct": ""}, {"t_s": "0.1", "a_mib": "", "b_pct": "2.0"}]
    assert [p.name for p in path.parent.iterdir()] == ["telemetry.csv.gz"]  # no partial file left


def test_uss_every_tenth_sample_of_a_real_process():
    child = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE)
    try:
        child.stdout.readline()  # started: its memory no longer grows
        source = ProcessTreeSource(lambda: [child.pid], uss_cpu_share=None)  # count-based only
        rows = [source.sample() for _ in range(25)]
    finally:
        child.kill()
        child.wait()
    assert [i for i, r in enumerate(rows) if "uss_mib" in r] == [0, 10, 20]
    assert all(0 < r["uss_mib"] <= r["rss_mib"] for r in rows if "uss_mib" in r)
    assert "cpu_pct" not in rows[0] and all("cpu_pct" in r for r in rows[1:])


def test_an_exited_unreaped_process_is_not_sampled_as_zero():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        row = ProcessTreeSource(lambda: [child.pid]).sample()
    finally:
        child.wait()
    assert "rss_mib" not in row and "proc_count" not in row and "ram_available_mib" in row


# -- the host: CPU busy time and swap traffic -------------------------------------------------------------------


def _proc_stat(user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice) -> bytes:
    fields = (user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice)
    return ("cpu  " + " ".join(map(str, fields)) + "\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\n").encode()


def _proc_vmstat(pswpin: int, pswpout: int, pad: int = 0) -> bytes:
    """/proc/vmstat's text; `pad` more bytes before the swap counters (the kernel adds lines, counters grow)."""
    padding = f"nr_pad {'7' * pad}\n" if pad else ""
    return f"nr_free_pages 5\n{padding}pgpgin 77\npswpin {pswpin}\npswpout {pswpout}\npgfault 3\n".encode()


def test_host_rates_from_proc_files(tmp_path):
    """The arithmetic on hand-written /proc files (re-written in place: the source keeps them open)."""
    hz = host_module._TICKS  # /proc/stat counts USER_HZ ticks
    (tmp_path / "stat").write_bytes(_proc_stat(1000, 20, 300, 50_000, 400, 10, 20, 30, 5, 0))
    (tmp_path / "vmstat").write_bytes(_proc_vmstat(100, 200))
    clock = [10.0]
    source = HostSource(proc=str(tmp_path), clock=lambda: clock[0])
    first = source.sample()
    assert "host_cpu_busy_pct" not in first and "swap_io_pages_s" not in first  # no baseline yet
    assert "ram_available_mib" in first  # no meminfo there: psutil's
    # 0.5 s later: 0.25 s user (0.1 s of it guest: inside user, not on top), 0.1 s system, 0.1 s steal,
    # 0.05 s irq: 0.5 CPU-seconds busy; idle and iowait (0.5 s and 0.5 s) are not busy
    (tmp_path / "stat").write_bytes(_proc_stat(1000 + hz // 4, 20, 300 + hz // 10, 50_000 + hz // 2, 400 + hz // 2,
                                               10 + hz // 20, 20, 30 + hz // 10, 5 + hz // 10, 0))
    (tmp_path / "vmstat").write_bytes(_proc_vmstat(130, 220))
    clock[0] += 0.5
    second = source.sample()
    assert second["host_cpu_busy_pct"] == pytest.approx(100.0 * (hz // 4 + hz // 10 + hz // 20 + hz // 10) / hz / 0.5)
    assert second["host_cpu_busy_pct"] == pytest.approx(100.0, abs=5)  # one core busy, in cpu_pct's unit
    assert second["swap_io_pages_s"] == pytest.approx((30 + 20) / 0.5)
    (tmp_path / "vmstat").write_bytes(_proc_vmstat(0, 0))  # counters went back (a different host?)
    clock[0] += 0.25
    third = source.sample()
    assert "swap_io_pages_s" not in third and third["host_cpu_busy_pct"] == 0.0
    (tmp_path / "vmstat").write_bytes(_proc_vmstat(4, 0))
    clock[0] += 0.5
    assert source.sample()["swap_io_pages_s"] == pytest.approx(8.0)  # a new baseline after the reset
    # only the start of /proc/vmstat is read once the counters are found: when they move past it (or their
    # digits are cut off), the whole file is read again, never a cut number
    total = 1_000_000
    (tmp_path / "vmstat").write_bytes(_proc_vmstat(total // 3, total - total // 3))
    source.sample()
    for pad in [100, *(p for k in range(505, 525) for p in (0, k)), 0, 3000]:
        total += 50
        (tmp_path / "vmstat").write_bytes(_proc_vmstat(total // 3, total - total // 3, pad))
        clock[0] += 0.5
        assert source.sample().get("swap_io_pages_s") == pytest.approx(100.0), pad
    source.close()


def test_host_without_proc_falls_back_to_psutil_for_cpu_and_leaves_swap_out(tmp_path):
    source = HostSource(proc=str(tmp_path / "no-proc"))
    assert "host_cpu_busy_pct" not in source.sample()
    end = time.monotonic() + 0.2
    while time.monotonic() < end:  # this process is busy, so the host is
        pass
    row = source.sample()
    assert 50 <= row["host_cpu_busy_pct"] <= 100 * os.cpu_count() + 50
    assert "swap_io_pages_s" not in row and "ram_available_mib" in row
    source.close()


def test_host_sample_is_cheap():
    source = HostSource(loopback=True)
    source.sample()
    started = time.thread_time()
    rows = [source.sample() for _ in range(200)]
    per_sample_s = (time.thread_time() - started) / 200
    source.close()
    assert all({"host_cpu_busy_pct", "swap_io_pages_s", "loopback_mib_s"} <= r.keys() for r in rows)
    assert all(r["swap_io_pages_s"] >= 0 and r["host_cpu_busy_pct"] >= 0 for r in rows)
    assert per_sample_s < 250e-6  # at 10 Hz: under 0.25 % of a core


_SPIN = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
start = time.process_time()
print("spinning", flush=True)
end = time.monotonic() + 0.5
while time.monotonic() < end:
    pass
print(time.process_time() - start, flush=True)
sys.stdin.readline()
"""


def _busy_s(times) -> float:
    return sum(times) - times.idle - times.iowait - times.guest - times.guest_nice


def test_a_busy_loop_outside_the_tree_is_other_cpu():
    """A child spinning for 0.5 s: a sampler watching an idle tree sees it as other CPU; one watching the
    spinner sees it as the tree's own, and the two `other_cpu_pct_mean` differ by the spinner's CPU."""
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
    spin = subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout.readline() == "ready\n"
        with Sampler(idle.pid, hz=20, nvml=False) as watch_idle, Sampler(spin.pid, hz=20, nvml=False) as watch_spin:
            time.sleep(0.25)  # baselines for the trees and the host
            spin.stdin.write("go\n")
            spin.stdin.flush()
            assert spin.stdout.readline() == "spinning\n"
            starts = watch_idle.now(), watch_spin.now()
            host_before = psutil.cpu_times(), time.monotonic()
            spin_cpu_s = float(spin.stdout.readline())
            host_after = psutil.cpu_times(), time.monotonic()
            ends = watch_idle.now(), watch_spin.now()
            time.sleep(0.15)  # a sample after the window
    finally:
        for child in (idle, spin):
            child.kill()
            child.wait()
    spin_pct = 100.0 * spin_cpu_s / (ends[0] - starts[0])
    host_pct = 100.0 * (_busy_s(host_after[0]) - _busy_s(host_before[0])) / (host_after[1] - host_before[1])
    for sampler, start, end in zip((watch_idle, watch_spin), starts, ends):
        sampler.mark_phase("spin", start, end, tokens=None)
    outside, inside = watch_idle.summarize("spin"), watch_spin.summarize("spin")
    assert spin_pct >= 30  # it got a good share of a core, even on a busy machine
    assert outside["cpu_pct_mean"] < 5 and inside["cpu_pct_mean"] == pytest.approx(spin_pct, abs=15)
    assert spin_pct - 15 <= outside["other_cpu_pct_mean"] <= 110 * os.cpu_count()
    assert outside["other_cpu_pct_mean"] == pytest.approx(host_pct, abs=20)  # psutil's reading of the host
    assert outside["other_cpu_pct_mean"] - inside["other_cpu_pct_mean"] == pytest.approx(spin_pct, abs=20)
    assert outside["swap_io_pages_s_peak"] is not None and outside["gpu_throttle_reasons"] is None


# -- real engine runs -------------------------------------------------------------------------------------------


def sampled_bench(engine, model, *, extra=(), shell=False, also=(), loopback=False, uss_every=10):
    """Run the real llama-bench (-p 64 -n 16 -r 2 -t 2) under a 100 Hz sampler. The kernel's own figures for
    the root process: (sampler, its peak RSS in MiB, its CPU seconds). The peak is the last VmHWM read from
    /proc before it exits (wait4's ru_maxrss would count the Python process it was forked from)."""
    argv = [str(engine.tool("llama-bench")), "-m", str(model), "-p", "64", "-n", "16", "-r", "2", "-t", "2",
            "-o", "json", *extra]
    if shell:  # a process tree: sh stays the parent of llama-bench
        argv = ["sh", "-c", '"$0" "$@"; true', *argv]
    pid: dict[str, int] = {}
    hwm_kib = 0
    before = os.times()
    with Sampler(lambda: [pid.get("bench"), *also], hz=100, loopback=loopback, nvml=False,
                 uss_every=uss_every) as s:
        proc = procs.start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid["bench"] = proc.pid
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    hwm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                pass
            time.sleep(0.005)
        cpu = os.times()
    procs.stop(proc)
    assert proc.returncode == 0
    return s, hwm_kib / 1024, cpu.children_user + cpu.children_system - before.children_user - before.children_system


def _peak(s: Sampler, key: str) -> float:
    return max(r[key] for r in s.samples if key in r)


@pytest.mark.engine
def test_rss_peak_follows_model_size_and_matches_the_kernel(mainline_engine):
    from harness.models import synthetic_model

    small, big = synthetic_model("tiny-glm"), synthetic_model("tiny")
    size_diff_mib = (big.stat().st_size - small.stat().st_size) / MIB  # about 4.3 MiB
    # a pp512 test besides pp64/tg16: a run of ~0.2 CPU-seconds left the sampler's missed first interval
    # (the process's start) at a third of it once (0.11 s sampled against 0.17 s)
    runs = {m: sampled_bench(mainline_engine, m, extra=("-p", "512"), uss_every=2) for m in (small, big)}
    for s, maxrss_mib, cpu_s in runs.values():
        assert _peak(s, "rss_mib") == pytest.approx(maxrss_mib, rel=0.05)  # the kernel's high-water mark
        rows = [r for r in s.samples if "cpu_pct" in r]
        busy_s = sum(r["cpu_pct"] / 100 * (r["t_s"] - p["t_s"]) for p, r in zip(s.samples, s.samples[1:])
                     if "cpu_pct" in r)
        assert len(rows) >= 5 and busy_s == pytest.approx(cpu_s, rel=0.25, abs=0.05)
        assert 0 < _peak(s, "uss_mib") <= _peak(s, "rss_mib")
    rise = _peak(runs[big][0], "rss_mib") - _peak(runs[small][0], "rss_mib")
    assert 0.75 * size_diff_mib <= rise <= 2 * size_diff_mib + 2


@pytest.mark.engine
def test_the_whole_process_tree_is_sampled(mainline_engine, tiny_model):
    _, bench_peak_mib, _ = sampled_bench(mainline_engine, tiny_model)
    s, sh_peak_mib, _ = sampled_bench(mainline_engine, tiny_model, shell=True)
    assert _peak(s, "proc_count") == 2  # sh and llama-bench
    assert sh_peak_mib < 0.3 * bench_peak_mib
    assert _peak(s, "rss_mib") >= 0.95 * bench_peak_mib + sh_peak_mib * 0.5  # llama-bench counted, not just sh


@pytest.mark.engine
def test_rpc_rig_loopback_traffic_carries_the_weights(mainline_engine, tiny_model, tmp_path):
    from harness.engines.rpc import RpcServer

    with RpcServer(mainline_engine, threads=1, log_path=tmp_path / "rpc.log") as rpc:
        rpc_rss_before = ProcessTreeSource(lambda: [rpc._proc.pid]).sample()["rss_mib"]
        s, bench_peak_mib, _ = sampled_bench(mainline_engine, tiny_model, loopback=True, also=[rpc._proc.pid],
                                extra=["--rpc", rpc.endpoint, "-ngl", "99", "-dev", "RPC0"])
    model_mib = tiny_model.stat().st_size / MIB
    moved_mib = sum(r["loopback_mib_s"] * (r["t_s"] - p["t_s"]) for p, r in zip(s.samples, s.samples[1:])
                    if "loopback_mib_s" in r)
    assert moved_mib >= 0.8 * model_mib  # every weight but the token embeddings went to the RPC server
    assert _peak(s, "proc_count") == 2  # llama-bench and the RPC server, two roots
    summary = summarize_phase(s.samples, [(0.0, s.samples[-1]["t_s"])], tokens=2 * (64 + 16))
    assert summary["loopback_mib_per_token"] == pytest.approx(moved_mib / 160, rel=0.02)
    assert summary["rss_peak_mib"] >= bench_peak_mib + rpc_rss_before  # both roots' trees are summed


def test_each_gpu_has_its_own_figures(install_fake, tmp_path):
    """Two GPUs doing different things in one phase: each one's VRAM peak, PCIe and utilization under its own
    index (devices.csv rows `gpu0`, `gpu1`), beside the aggregates (fullest GPU, summed PCIe, mean utilization)."""
    from harness.results.reader import read_devices
    from harness.results.record import COLUMNS, RunRecord
    from harness.results.store import ResultsStore
    from harness.telemetry.attribution import PER_GPU

    busy, light = FakeGpu(), FakeGpu()
    install_fake(busy, light)
    with Sampler(no_process, hz=100) as s:
        busy.set("pp")
        light.set("tg")
        time.sleep(0.05)
        start = s.now()
        time.sleep(0.3)
        s.mark_phase("pp", start, s.now(), tokens=512)
        time.sleep(0.05)
    pp = s.summarize("pp")
    gpus = pp[PER_GPU]
    assert sorted(gpus) == [0, 1] and pp["vram_peak_mib"] == 6100
    assert (gpus[0]["vram_peak_mib"], gpus[1]["vram_peak_mib"]) == (6000, 6100)
    assert (gpus[0]["pcie_rx_mib_s_mean"], gpus[1]["pcie_rx_mib_s_mean"], pp["pcie_rx_mib_s_mean"]) == (500, 100, 600)
    assert (gpus[0]["pcie_tx_mib_s_mean"], gpus[1]["pcie_tx_mib_s_mean"]) == (10, 5)
    assert (gpus[0]["gpu_util_pct_mean"], gpus[1]["gpu_util_pct_mean"], pp["gpu_util_pct_mean"]) == (90, 40, 65)
    ResultsStore(tmp_path).append(RunRecord(run_id="r", status="ok").update(**pp))
    devices = read_devices(tmp_path).set_index("device")
    assert list(devices.index) == ["gpu0", "gpu1"] and devices.at["gpu1", "vram_peak_mib"] == 6100
    assert not any(c.endswith("_gpu1") for c in COLUMNS)