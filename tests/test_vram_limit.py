"""Emulating a smaller card. The CUDA driver is a boundary this machine lacks: here the reservation must fail
with a one-line reason and leave nothing running; the arithmetic is checked directly."""

from __future__ import annotations

import pytest

from harness import procs
from harness.errors import UserError
from harness.gpu.reserve import reservation_bytes
from harness.gpu.vram_limit import VramReservation
from harness.units import GIB, MIB


def test_reservation_leaves_the_limit_free():
    assert reservation_bytes(140 * GIB, 24 * GIB) == 116 * GIB
    assert reservation_bytes(20 * GIB, 24 * GIB) == 0           # a smaller card already: take nothing
    assert reservation_bytes(24 * GIB + 3 * MIB, 24 * GIB) == 2 * MIB  # whole 2 MiB granules


def test_without_a_driver_it_is_a_clear_error(tmp_path):
    import ctypes.util

    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has a CUDA driver: the device check covers the real reservation")
    with pytest.raises(UserError, match="needs an NVIDIA GPU with its driver"):
        with VramReservation(0, 24):
            pass
    assert not procs.live_groups()


def test_a_sweep_with_a_limit_but_no_gpu_fails_each_run_clearly(mainline_engine, tmp_path):
    import ctypes.util
    import csv

    from conftest import run_cli

    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has a CUDA driver")
    config = tmp_path / "bench.yaml"
    config.write_text("models: [{synth: tiny}]\nengines: [mainline]\n"
                      "bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1}\n")
    result = run_cli("run", config, "--out", tmp_path / "out", "--vram-limit-gib", "24")
    assert result.returncode == 2 and "needs an NVIDIA GPU" in result.stderr and "Traceback" not in result.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "default" / "runs.csv"))) \
        if (tmp_path / "out" / "default" / "runs.csv").exists() else []
    assert rows == []  # nothing measured under a limit that could not be applied
