"""Split GGUFs (`name-00001-of-00003.gguf`, as gguf-split and GGUFWriter(split_max_tensors=...) write them): the
synthetic writer's shards, any shard read as the whole model, the errors of a missing or foreign shard, the
per-file mapped spans, bench.yaml's split synthetic models; and, with the real engines, that both load the
split model whole and report one mapped CPU buffer per file, the span predicted for it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from gguf import GGUFReader

from harness import procs
from harness.cli import main
from harness.config import BenchConfig, load_config
from harness.engines.rpc import RpcServer
from harness.errors import UserError
from harness.models import inspect_model, inspect_preset, synthetic_model, write_synthetic_model
from harness.models.shards import SplitRule, read_shards, shard_path
from harness.models.presets import get_preset
from harness.models.synth import preset_digest
from harness.plan.load_report import parse_load_log
from harness.plan.model_buffers import expected_model_buffer_bytes, mapped_span, mapped_spans
from harness.plan.planner import _with_layout_offsets, resolve_model
from harness.plan.request import request_from_config
from harness.units import MIB

FORTY = SplitRule(max_tensors=40)  # the tiny preset's 99 tensors: 40 + 40 + 19


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("split")
    return {"whole": write_synthetic_model(folder / "tiny.gguf", "tiny"),
            "split": write_synthetic_model(folder / "tiny-split.gguf", "tiny", split=FORTY)}


def _shards(first: Path) -> list[Path]:
    return [shard_path(first, i, 3) for i in range(3)]


def _without_files(info) -> dict:
    d = info.to_dict(include_tensors=True)
    for key in ("path", "file_size_bytes", "files"):
        d.pop(key)
    for t in d["tensors"]:
        t.pop("offset"), t.pop("file")
    return d


# --- writing ---------------------------------------------------------------------------------

def test_writer_splits_as_gguf_split(written):
    first = written["split"]
    assert first.name == "tiny-split-00001-of-00003.gguf"
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(
        ["tiny.gguf", *(p.name for p in _shards(first))])  # nothing left of the staging folder
    plan = inspect_preset("tiny").tensors
    shard_of = FORTY.shard_of_each([t.n_bytes for t in plan])
    for index, path in enumerate(_shards(first)):
        reader = GGUFReader(path)
        assert reader.get_field("split.no").contents() == index
        assert reader.get_field("split.count").contents() == 3
        assert reader.get_field("split.tensors.count").contents() == len(plan)
        assert [t.name for t in reader.tensors] == [t.name for t, s in zip(plan, shard_of) if s == index]
        assert (reader.get_field("general.architecture") is not None) == (index == 0)  # metadata in the first


def test_split_by_size_keeps_each_shard_under_the_limit(tmp_path):
    first = write_synthetic_model(tmp_path / "m.gguf", "tiny", split=SplitRule(max_mib=6))
    files = read_shards(first)
    assert len(files) == 3 and files[0].path == first
    for f in files:
        assert sum(t.n_bytes for t in f.header.tensors) <= 6 * MIB
    # the next tensor would not have fit: the rule is GGUFWriter's, not a rounder one
    sizes = [sum(t.n_bytes for t in f.header.tensors) for f in files]
    assert sizes[0] + files[1].header.tensors[0].n_bytes > 6 * MIB


def test_a_shard_name_as_output_is_not_doubled(tmp_path):
    first = write_synthetic_model(tmp_path / "m-00001-of-00003.gguf", "tiny", split=FORTY)
    assert first == tmp_path / "m-00001-of-00003.gguf" and len(list(tmp_path.iterdir())) == 3


def test_split_synthetic_model_is_cached_under_its_own_name(tmp_path):
    first = synthetic_model("tiny", seed=1, cache_dir=tmp_path, split=FORTY)
    stem = f"tiny-{preset_digest(get_preset('tiny'))}-seed1"
    assert first == tmp_path / "models" / f"{stem}-split-40t-00001-of-00003.gguf"
    mtime = first.stat().st_mtime_ns
    assert synthetic_model("tiny", seed=1, cache_dir=tmp_path, split=FORTY) == first
    assert first.stat().st_mtime_ns == mtime
    assert synthetic_model("tiny", seed=1, cache_dir=tmp_path) == tmp_path / "models" / f"{stem}.gguf"
    assert SplitRule(max_tensors=40, max_mib=6).tag == "split-40t-6mib"
    with pytest.raises(UserError):
        SplitRule()


# --- reading -------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1, 2])
def test_any_shard_reads_as_the_whole_model(written, index):
    whole = inspect_model(written["whole"])
    shards = _shards(written["split"])
    info = inspect_model(shards[index])
    assert _without_files(info) == _without_files(whole)
    assert info.path == str(shards[0]) and info.files == [str(p) for p in shards]
    assert info.file_size_bytes == sum(p.stat().st_size for p in shards)
    assert whole.files == [str(written["whole"])] and whole.file_size_bytes == written["whole"].stat().st_size
    assert len(info.moe_layers) == 8 and len(info.tensors) == 99
    for path in shards:  # each record's file and offset are where GGUFReader finds its data
        reader = GGUFReader(path)
        by_name = {t.name: t for t in info.tensors}
        for t in reader.tensors:
            assert (by_name[t.name].file, by_name[t.name].offset) == (str(path), int(t.data_offset))


def test_a_missing_shard_is_one_line_naming_it(written, tmp_path):
    for p in _shards(written["split"]):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "tiny-split-00002-of-00003.gguf").unlink()
    with pytest.raises(UserError) as err:
        inspect_model(tmp_path / "tiny-split-00003-of-00003.gguf")
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "tiny-split-00002-of-00003.gguf"))
    assert "missing shard 2 of 3" in message


def test_a_renamed_or_foreign_shard_is_an_error(written, tmp_path):
    shards = _shards(written["split"])
    shutil.copy(shards[0], tmp_path / "renamed.gguf")
    with pytest.raises(UserError, match="does not end in -00001-of-00003.gguf"):
        inspect_model(tmp_path / "renamed.gguf")
    for p in shards:
        shutil.copy(p, tmp_path / p.name)
    shutil.copy(shards[2], tmp_path / shards[1].name)  # shard 3 under shard 2's name
    with pytest.raises(UserError, match="split keys say shard 3 of 3, expected 2 of 3"):
        inspect_model(tmp_path / shards[0].name)


def test_cli_inspect_a_middle_shard_and_a_missing_one(written, tmp_path, capsys):
    shards = _shards(written["split"])
    assert main(["inspect", str(shards[1]), "--json"]) == 0
    split = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(written["whole"]), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert split["tensor_bytes_total"] == whole["tensor_bytes_total"] and split["layers"] == whole["layers"]
    assert split["moe_layers"] == whole["moe_layers"] == list(range(8)) and len(split["files"]) == 3
    assert main(["inspect", str(shards[2])]) == 0
    assert "in 3 files, 99 tensors" in capsys.readouterr().out
    shutil.copy(shards[0], tmp_path / shards[0].name)
    assert main(["inspect", str(tmp_path / shards[0].name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing shard 2 of 3" in err


def test_cli_synth_writes_shards(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "m.gguf"), "--preset", "tiny", "--split-max-tensors", "40"]) == 0
    assert "3 shards" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


# --- mapped spans ---------------------------------------------------------------------------

def test_mapped_spans_are_per_file(written):
    whole, split = inspect_model(written["whole"]), inspect_model(written["split"])
    cpu = {"token_embd.weight", "output_norm.weight", "output.weight"}  # first and last tensors of the plan
    predicted = {}
    for key, model in (("whole", whole), ("split", split)):
        devices = {t.name: ("cpu" if t.name in cpu else "accel") for t in model.tensors}
        predicted[key] = expected_model_buffer_bytes(model.tensors, devices, mmap=True)
    assert predicted["whole"]["cpu"] == mapped_span(whole.tensors)  # from token_embd to output: the whole file
    by_name = {t.name: t for t in split.tensors}
    spans = mapped_spans([by_name[n] for n in cpu])
    shards = [str(p) for p in _shards(written["split"])]
    assert spans == {shards[0]: by_name["token_embd.weight"].n_bytes,
                     shards[2]: by_name["output.weight"].offset + by_name["output.weight"].n_bytes
                     - by_name["output_norm.weight"].offset}
    assert predicted["split"]["cpu"] == sum(spans.values()) < predicted["whole"]["cpu"] / 5
    assert predicted["split"]["accel"] == predicted["whole"]["accel"]


def test_an_unwritten_split_preset_is_planned_as_the_writer_writes_it(written):
    real = inspect_model(written["split"])
    planned = _with_layout_offsets(inspect_preset("tiny"), written["split"].with_name("tiny-split.gguf"), FORTY)
    start = {f: min(t.offset for t in real.tensors if t.file == f) for f in real.files}
    assert [(t.name, t.file, t.offset - start[t.file]) for t in real.tensors] == \
        [(t.name, t.file, t.offset) for t in planned.tensors]
    assert planned.files == real.files


# --- bench.yaml --------------------------------------------------------------------------------

def _config(tmp_path: Path, model: str) -> BenchConfig:
    path = tmp_path / "bench.yaml"
    path.write_text(f"name: s\nmodels:\n  - {model}\nengines: [mainline]\nstrategies:\n  - name: all-gpu\n")
    return load_config(path)


def test_bench_yaml_split_synthetic_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path / "cache"))
    spec = _config(tmp_path, "{synth: tiny, split_max_tensors: 40}").models[0]
    assert spec.split == FORTY and spec.label == "synth:tiny:split-40t"
    planned = resolve_model(spec, write=False)
    assert planned.path.name == f"tiny-{preset_digest(get_preset('tiny'))}-seed0-split-40t-00001-of-00003.gguf" and not planned.path.exists()
    assert len({t.file for t in planned.info.tensors}) == 3
    resolved = resolve_model(spec, write=True)
    assert resolved.path == planned.path and resolved.info.files == planned.info.files
    unsplit = resolve_model(_config(tmp_path, "{synth: tiny}").models[0], write=False)
    assert resolved.identity != unsplit.identity
    for bad, match in [("{path: m.gguf, split_max_tensors: 4}", "split a synthetic model"),
                       ("{synth: tiny, split_max_mib: 0}", "greater than 0")]:
        with pytest.raises(UserError, match=match):
            _config(tmp_path, bad)


def test_bench_yaml_path_to_a_middle_shard_runs_the_first(written, tmp_path):
    shards = _shards(written["split"])
    config = _config(tmp_path, f"{{path: {shards[1]}}}")
    resolved = resolve_model(request_from_config(config).models[0])
    assert resolved.path == shards[0] and len(resolved.info.tensors) == 99
    assert f":{resolved.info.file_size_bytes}:" in resolved.identity


# --- the real engines -------------------------------------------------------------------------

# mainline `load_tensors:   CPU_Mapped model buffer size = ...`, ik `llm_load_tensors:        CPU buffer size = ...`
# (mapped, in these tests: ik names its mapped CPU buffers CPU)
_MAPPED_LINE = re.compile(r"load_tensors:\s+(?:CPU_Mapped model|CPU) buffer size =\s*([\d.]+) MiB")


def _mapped_lines_mib(log_text: str) -> list[float]:
    """Every mapped CPU model buffer line of the last load, in order (both engines: one per file)."""
    last = log_text[log_text.rindex("loaded meta data with"):]
    return [float(m) for m in _MAPPED_LINE.findall(last)]


def _bench(engine, model_path: Path, args: list[str], log: Path) -> str:
    result = procs.run([str(engine.tool("llama-bench")), "-m", str(model_path), *args, "-p", "16", "-n", "4",
                        "-r", "1", "-t", "2", "-v", "-o", "json"], timeout_s=180, log_path=log,
                       stdout_path=log.with_suffix(".json"))
    assert result.ok, result.output_tail
    assert json.loads(log.with_suffix(".json").read_text())  # it ran its tests
    return log.read_text(errors="replace")


@pytest.fixture(scope="module")
def split_tiny() -> Path:
    return synthetic_model("tiny", split=FORTY)


def test_engine_loads_a_split_model_whole_on_the_cpu(engine, split_tiny, tiny_model, tmp_path):
    """All on the CPU, mapped: one buffer per shard, each the shard's tensor data; the model is the same."""
    split, whole = inspect_model(split_tiny), inspect_model(tiny_model)
    text = _bench(engine, split_tiny, [], tmp_path / "bench.log")
    spans = mapped_spans(split.tensors)
    assert _mapped_lines_mib(text) == pytest.approx([spans[f] / MIB for f in split.files], abs=0.005)
    report = parse_load_log(text)[-1]
    assert report.model_bytes_by_device["CPU"] == pytest.approx(mapped_span(split.tensors), abs=0.015 * MIB)
    assert f"{len(whole.tensors)} tensors" in text or "additional 2 GGUFs" in text


def test_engine_maps_each_shard_separately_beside_an_accelerator(engine, split_tiny, tmp_path):
    """token_embd (first in shard 1) and output (last in shard 3; on ik output_norm too) on the CPU, every layer
    on the engine's RPC server: two mapped CPU buffers, of those tensors' spans in their own files (one file
    would have mapped all 15.6 MiB)."""
    model = inspect_model(split_tiny)
    with RpcServer(engine, threads=1, log_path=tmp_path / "rpc.log") as rpc:
        device = f"RPC0[{rpc.endpoint}]"
        if engine.dialect == "mainline":  # -ngl 99 puts layers and output on RPC; the override brings output back
            text = _bench(engine, split_tiny, ["--rpc", rpc.endpoint, "-ngl", "99", "-ot", r"^output\.=CPU"],
                          tmp_path / "bench.log")
            cpu = {"token_embd.weight", "output.weight"}
        else:  # ik maps only without CPU overrides, and its bench cannot use RPC: the server, layers by -ot
            from harness.tools.server_process import LlamaServer

            log = tmp_path / "server.log"
            with LlamaServer(engine.tool("llama-server"), split_tiny,
                             ["--rpc", rpc.endpoint, "-ngl", "99", "-ot", rf"blk\.={device}", "-c", "256"],
                             log_path=log, ready_timeout_s=120):
                pass
            text = log.read_text(errors="replace")
    cpu = {"token_embd.weight", "output_norm.weight", "output.weight"}
    devices = {t.name: ("CPU" if t.name in cpu else device) for t in model.tensors}
    spans = mapped_spans([t for t in model.tensors if t.name in cpu])
    assert _mapped_lines_mib(text) == pytest.approx([spans[model.files[0]] / MIB, spans[model.files[2]] / MIB],
                                                    abs=0.005)
    report = parse_load_log(text)[-1]
    predicted = expected_model_buffer_bytes(model.tensors, devices, mmap=True, cpu_device="CPU")
    assert report.model_bytes_by_device["CPU"] == pytest.approx(predicted["CPU"], abs=0.01 * MIB)
    extra = 32 if engine.dialect == "ik" else 0  # ik's RPC buffer: 32 bytes more than asked (verify.py)
    assert report.model_bytes_by_device[device] == pytest.approx(predicted[device] + extra, abs=0.005 * MIB)


def test_sweep_of_a_split_model_plans_and_runs_it_whole(mainline_engine, tmp_path):
    """bench.yaml's `{synth: tiny, split_max_tensors: 40}`: `moebench plan` (nothing written yet: the planned
    layout) and `moebench run` (the shards written, the engine given the first) predict the same model buffers,
    the engine reports them (one CPU_Mapped line per shard, summed), and each row's size is the whole model's."""
    import csv

    from conftest import run_cli
    from harness.models import synthetic_model_path
    from harness.results.reader import by_device, read_devices

    first = synthetic_model_path("tiny", 5, split=FORTY)
    for shard in _shards(first):
        shard.unlink(missing_ok=True)
    config = tmp_path / "bench.yaml"
    config.write_text("""
models: [{synth: tiny, seed: 5, split_max_tensors: 40}]
engines: [mainline]
tools: [llama-bench]
rpc_rig: true
strategies: [{name: last-n-layers-cpu, params: {n: 2}}, {name: custom, params: {overrides: '^output\\.=CPU'}}]
bench: {prompt_tokens: [16], gen_tokens: [4], repetitions: 1, processes: 1, ctx: 256}
""")
    plan = run_cli("plan", config, "--json")
    assert plan.returncode == 0, plan.stderr
    planned = {r["config_id"]: r for r in json.loads(plan.stdout)}
    assert not first.exists() and {r["model_file"] for r in planned.values()} == {str(first)}
    result = run_cli("run", config, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "default" / "runs.csv").open()))
    assert rows and {r["model"] for r in rows} == {"synth:tiny:split-40t"}
    sizes = sum(p.stat().st_size for p in _shards(first))
    devices = read_devices(tmp_path / "out" / "default")
    predicted_by_run = by_device(devices, "predicted_model_bytes")
    actual_by_run = by_device(devices, "actual_model_bytes")
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        assert row["model_file"] == str(first) and int(row["model_size_bytes"]) == sizes
        predicted, actual = predicted_by_run[row["run_id"]], actual_by_run[row["run_id"]]
        portless = lambda buffers: {re.sub(r"\[.*\]", "", d): n for d, n in buffers.items()}  # noqa: E731
        assert portless(predicted) == portless(planned[row["config_id"]]["predicted_model_buffers"])
        assert set(predicted) == set(actual)
        for device in predicted:  # two or three summed lines, each rounded to 0.01 MiB
            assert predicted[device] == pytest.approx(actual[device], abs=0.015 * MIB), (row["strategy"], device)
