"""Hardware profiles: cards by any spelling of their name, RAM peaks, profile files with errors for people."""

import pytest

from harness.errors import UserError
from harness.hardware.gpus import GPUS, gpu_named
from harness.hardware.profile import load_profile, parse_ram, profile_from_args
from harness.perf.priors import PRIOR, prior_constants


@pytest.mark.parametrize("name", ["RTX 4090", "rtx4090", "NVIDIA GeForce RTX 4090", "geforce-rtx-4090"])
def test_a_card_is_found_by_any_spelling(name):
    card = gpu_named(name)
    assert (card.name, card.vram_gib, card.memory_gb_s, card.pcie_gen, card.pcie_lanes) == \
        ("RTX 4090", 24, 1008, 4, 16)


def test_nvml_names_with_sizes_find_their_card():
    assert gpu_named("NVIDIA GeForce RTX 4060 Ti").name == "RTX 4060 Ti 16GB"
    assert gpu_named("NVIDIA H100 80GB HBM3").name == "H100 SXM"


def test_an_unknown_card_says_did_you_mean_and_lists_the_known():
    with pytest.raises(UserError) as err:
        gpu_named("RTX 4909")
    text = str(err.value)
    assert "did you mean RTX 4090" in text and all(g.name in text for g in GPUS)


def test_every_card_names_its_source_and_has_sane_figures():
    for card in GPUS:
        assert card.source and 8 <= card.vram_gib <= 192 and 200 <= card.memory_gb_s <= 8000
        assert card.pcie_gen in (3, 4, 5) and card.pcie_lanes in (8, 16)


@pytest.mark.parametrize("text, gb_s", [("ddr5-4800x2", 76.8), ("DDR4-3200", 51.2), ("ddr5-4800x8", 307.2),
                                        ("70GB/s", 70.0), ("62.5 GB/s", 62.5)])
def test_ram_peaks(text, gb_s):
    assert parse_ram(text).peak_gb_s == pytest.approx(gb_s)


def test_a_bad_ram_description_shows_the_forms():
    with pytest.raises(UserError, match="ddr4-3200x2"):
        parse_ram("fast")


def test_profile_from_arguments_describes_the_box():
    box = profile_from_args("RTX 3090", "ddr4-3600x2", 16)
    assert box.describe() == ("RTX 3090 (24 GiB, 936 GB/s, PCIe 4.0 x16), RAM ddr4-3600x2 (57.6 GB/s peak), "
                              "16 cores")
    with pytest.raises(UserError, match="--cores"):
        profile_from_args("RTX 3090", "ddr4-3600x2", 0)


def test_profile_file_by_name_and_by_figures(tmp_path):
    named = tmp_path / "named.yaml"
    named.write_text("gpu: RTX 5080\nram: ddr5-6000x2\ncores: 8\n")
    box = load_profile(named)
    assert (box.gpu.name, box.ram.peak_gb_s, box.cores, box.source) == ("RTX 5080", 96.0, 8, str(named))
    figures = tmp_path / "figures.yaml"
    figures.write_text("gpu: {name: my card, vram_gib: 20, memory_gb_s: 800, pcie_gen: 4, pcie_lanes: 16}\n"
                       "ram: {gb_s: 55}\ncores: 12\n")
    box = load_profile(figures)
    assert (box.gpu.memory_bytes_s, box.ram.peak_bytes_s, box.gpu.fp16_tflops) == (800e9, 55e9, None)
    assert box.gpu.source == f"profile file {figures}"


def test_profile_file_mistakes_name_the_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu: RTX 4090\nram: ddr5-4800x2\ncores: 16\nvram: 24\n")
    with pytest.raises(UserError) as err:
        load_profile(bad)
    assert str(err.value).startswith(f"{bad}:4:") and "vram" in str(err.value)
    missing = tmp_path / "missing.yaml"
    missing.write_text("gpu: RTX 4090\nram: ddr5-4800x2\n")
    with pytest.raises(UserError, match="missing required key 'cores'"):
        load_profile(missing)
    with pytest.raises(UserError, match="no such file"):
        load_profile(tmp_path / "nothing.yaml")


def test_a_measured_upload_rate_replaces_the_bus_share(tmp_path):
    """`upload_gb_s` in a profile file: the box's own host-to-GPU rate prices the bus (the published tables ask
    12.7 to 32 GB/s of PCIe 4.0 x16 boxes: a share of the link cannot say which)."""
    path = tmp_path / "box.yaml"
    path.write_text("gpu: RTX 4090\nram: ddr5-6000x2\ncores: 16\nupload_gb_s: 12.5\n")
    box = load_profile(path)
    assert box.upload_gb_s == 12.5 and "uploads 12.5 GB/s measured" in box.describe()
    assert prior_constants(box).bus_s_per_byte == pytest.approx(1 / 12.5e9)
    path.write_text("gpu: RTX 4090\nram: ddr5-6000x2\ncores: 16\n")
    assert prior_constants(load_profile(path)).bus_s_per_byte == pytest.approx(1 / (PRIOR.bus * 16 * 1969e6))
