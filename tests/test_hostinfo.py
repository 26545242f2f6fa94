"""The host fingerprint: real CPU and RAM here; GPUs through a fake NVML (we have no GPU), including a metric
the GPU does not support."""

from __future__ import annotations

import sys
import types

from harness import hostinfo


def _forget_nvml():
    """A fresh fingerprint and NVML session (this test swaps in its own pynvml)."""
    from harness.telemetry.nvml import shared_nvml

    hostinfo.host_fingerprint.cache_clear()
    shared_nvml.cache_clear()


def test_cpu_and_ram_are_real():
    fp = hostinfo._cpu_model(), hostinfo.host_fingerprint()
    assert fp[0] and fp[1]["host_ram_gib"] > 1 and fp[1]["host_cpu_threads"] >= 1


def test_gpus_from_nvml_with_an_unsupported_metric(monkeypatch):
    class NotSupported(Exception):
        pass

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: b"580.65",
        nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetName=lambda h: "NVIDIA GeForce RTX 4090",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=24 * 2**30, free=23 * 2**30),
        nvmlDeviceGetCurrPcieLinkGeneration=lambda h: 4, nvmlDeviceGetMaxPcieLinkGeneration=lambda h: 4,
        nvmlDeviceGetCurrPcieLinkWidth=lambda h: 16,
        nvmlDeviceGetMaxPcieLinkWidth=lambda h: (_ for _ in ()).throw(NotSupported()),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    _forget_nvml()
    try:
        fp = hostinfo.host_fingerprint()
    finally:
        _forget_nvml()
    assert fp["gpu_name"] == "NVIDIA GeForce RTX 4090" and fp["gpu_vram_total_mib"] == 24576
    assert fp["gpu_driver"] == "580.65" and fp["gpu_pcie"] == "gen4/4 x16/None"


def test_no_driver_means_no_gpu(monkeypatch):
    def fail():
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=fail))
    _forget_nvml()
    try:
        fp = hostinfo.host_fingerprint()
    finally:
        _forget_nvml()
    assert fp["gpu_name"] == "" and fp["gpu_vram_total_mib"] is None and fp["gpu_pcie"] == ""
