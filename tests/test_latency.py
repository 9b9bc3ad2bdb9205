"""Tests of the per-layer latency lookup table, probes, CSV import and the SQL backend."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from nnsearch.errors import ExportError, LatencyError
from nnsearch.latency import probes as lut_probes
from nnsearch.latency import table as latency
from nnsearch.latency import tflite
from nnsearch.latency.stored_table import SqlLutBackend
from nnsearch.latency.table import DeviceProfile, LatencyTable, LutEntry, MemoryBackend, OpKey
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.store.engine import Store

CONV_DOWN = Arch((8, 16), (1, 1), ("concat",), "residual", "conv", True)
POOL_DOWN = Arch((4, 8, 16), (0, 1, 1), ("add", "concat"), "plain", "maxpool", True)
PHONE = DeviceProfile("phone-npu", "tflite-npu", "vendor 1.0", 1)


def random_arches(space_name: str, count: int, seed: int = 0) -> list[Arch]:
    space, rng = load_space(space_name), random.Random(seed)
    return [space.sample(lambda _n, choices: rng.choice(list(choices))) for _ in range(count)]


@pytest.fixture(scope="module")
def host_table() -> LatencyTable:
    """A host table with the entries of CONV_DOWN and POOL_DOWN at 32x32 (1 run each: fast)."""
    table = LatencyTable(latency.host_profile(1), runs=1, warmup=0)
    for arch in (CONV_DOWN, POOL_DOWN):
        table.build(key for key, _ in table.keys(arch, 32, 32))
    return table


def test_keys_count_every_exported_op_and_fold_pads() -> None:
    keys = lut_probes.arch_keys(CONV_DOWN, 32, 48)
    graph = tflite.lower(build_student(CONV_DOWN), (1, 3, 32, 48))
    ops = [layer.op for layer in graph.layers if layer.op != "PAD"]
    assert sum(n for _, n in keys) == len(ops)
    strided = [key for key, _ in keys if key.op == "CONV_2D" and key.stride == 2]
    assert strided == [OpKey("CONV_2D", 32, 48, 8, 16, 3, 2, "RELU")]  # unpadded input size
    assert "PAD" not in {key.op for key, _ in keys}
    assert lut_probes.arch_keys(CONV_DOWN, 32, 48) is keys  # cached per Arch and size


def test_keys_refuse_a_resolution_the_arch_cannot_take() -> None:
    with pytest.raises(LatencyError, match="multiples of 4"):
        lut_probes.arch_keys(POOL_DOWN, 30, 32)


@pytest.mark.parametrize("arch", [CONV_DOWN, POOL_DOWN], ids=["conv", "maxpool"])
def test_probe_shapes_match_the_exported_layers(arch: Arch, tmp_path: Path) -> None:
    graph = tflite.lower(build_student(arch), (1, 3, 32, 48))
    pads = lut_probes.folded_pads(graph)
    for layer in graph.layers:
        if layer.output in pads:
            continue
        key = lut_probes.layer_key(layer, graph, pads)
        probe = lut_probes.probe_graph(key)
        assert probe.shapes[probe.output] == graph.shapes[layer.output], key
        ops = tflite.check_native_ops(lut_probes.write_probe(key, tmp_path))
        assert ops == (["PAD", "CONV_2D"] if key.op == "CONV_2D" and key.stride > 1 else [key.op])


def test_space_keys_cover_sampled_students() -> None:
    keys = set(lut_probes.space_keys(load_space("tiny"), 32, 32))
    for arch in random_arches("tiny", 25):
        assert {key for key, _ in lut_probes.arch_keys(arch, 32, 32)} <= keys, arch.describe()


def test_prediction_is_the_sum_of_entries(host_table: LatencyTable) -> None:
    assert host_table.missing(key for key, _ in host_table.keys(CONV_DOWN, 32, 32)) == []
    assert host_table.build(key for key, _ in host_table.keys(CONV_DOWN, 32, 32)) == []  # nothing re-measured
    expected = sum(host_table._ms[key] * n for key, n in lut_probes.arch_keys(CONV_DOWN, 32, 32))
    assert host_table.predict(CONV_DOWN, 32, 32) == pytest.approx(expected)
    assert expected > 0


def test_missing_entries_raise_or_are_measured(host_table: LatencyTable) -> None:
    fresh = LatencyTable(host_table.device, host_table.backend, runs=1, warmup=0)
    assert fresh.predict(CONV_DOWN, 32, 32) == pytest.approx(host_table.predict(CONV_DOWN, 32, 32))  # from backend
    with pytest.raises(LatencyError, match="lacks"):
        fresh.predict(CONV_DOWN, 16, 16)
    assert fresh.predict(CONV_DOWN, 16, 16, measure_missing=True) > 0


def test_foreign_device_is_not_measured_here() -> None:
    with pytest.raises(LatencyError, match="cannot be measured on this host"):
        LatencyTable(PHONE).predict(CONV_DOWN, 16, 16, measure_missing=True)


def test_calibration_recovers_a_known_scale_despite_noise_and_outliers() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.uniform(20, 600, 12)
    measured = 1.07 * predicted * rng.uniform(0.97, 1.03, 12)
    measured[:2] *= 1.8  # two calibration timings hit by a busy moment of the machine
    assert latency.fit_scale(list(measured), list(predicted)) == pytest.approx(1.07, rel=0.02)
    assert float(np.mean(measured / predicted)) > 1.15  # a mean ratio would not recover it


def test_calibration_is_the_median_ratio(host_table: LatencyTable) -> None:
    assert latency.fit_scale([2.0, 3.0, 100.0], [1.0, 1.0, 1.0]) == 3.0
    with pytest.raises(LatencyError):
        latency.fit_scale([1.0], [0.0])
    table = LatencyTable(host_table.device, host_table.backend)
    plain = table.predict(CONV_DOWN, 32, 32)
    scale = table.calibrate([(CONV_DOWN, 32, 32, 2 * plain), (POOL_DOWN, 32, 32, 2 * table.predict(POOL_DOWN, 32, 32))])
    assert scale == pytest.approx(2.0) and table.predict(CONV_DOWN, 32, 32) == pytest.approx(2 * plain)


def test_exported_probes_and_imported_latencies_predict(tmp_path: Path) -> None:
    space = load_space("tiny")
    manifest = lut_probes.export_probes(space, (32, 32), tmp_path / "probes")
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [lut_probes.key_from_row(r) for r in rows] == lut_probes.space_keys(space, 32, 32)
    for row in rows[:5]:
        assert set(tflite.check_native_ops(manifest.parent / row["file"])) <= tflite.NATIVE_OPS
    measured = tmp_path / "phone.csv"
    with measured.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*lut_probes.KEY_COLUMNS, "median_ms"])
        writer.writeheader()
        writer.writerows({**{c: r[c] for c in lut_probes.KEY_COLUMNS}, "median_ms": "0.5"} for r in rows)
    entries = latency.import_latencies(measured, PHONE)
    assert len(entries) == len(rows) and {(e.device, e.source) for e in entries} == {(PHONE, "imported")}
    table = LatencyTable(PHONE)
    table.add(entries)
    arch = random_arches("tiny", 1, seed=3)[0]
    instances = sum(n for _, n in lut_probes.arch_keys(arch, 32, 32))
    assert table.predict(arch, 32, 32) == pytest.approx(0.5 * instances)


def test_import_names_the_bad_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("op,in_h\nCONV_2D,8\n")
    with pytest.raises(LatencyError, match=r"bad\.csv lacks column\(s\) \['in_w'"):
        latency.import_latencies(path, PHONE)
    header = ",".join([*lut_probes.KEY_COLUMNS, "median_ms"])
    path.write_text(f"{header}\nADD,8,8,4,4,0,1,NONE,0.1\nADD,8,x,4,4,0,1,NONE,0.1\n")
    with pytest.raises(LatencyError, match=r"bad\.csv:3"):
        latency.import_latencies(path, PHONE)
    with pytest.raises(LatencyError, match="cannot read"):
        latency.import_latencies(tmp_path / "absent.csv", PHONE)


@pytest.mark.parametrize("make_backend", ["memory", "sql"])
def test_backends_store_replace_and_separate_devices(make_backend: str, tmp_path: Path) -> None:
    backend = MemoryBackend() if make_backend == "memory" else SqlLutBackend(Store(f"sqlite:///{tmp_path / 's.db'}"))
    host = latency.host_profile(1)
    key, other = OpKey("ADD", 8, 8, 4, 4, 0, 1, "RELU"), OpKey("RELU", 8, 8, 4, 4, 0, 1, "NONE")
    backend.put(
        [
            LutEntry(host, key, median_ms=1.0, min_ms=0.9, max_ms=1.2, runs=3),
            LutEntry(PHONE, key, "imported", median_ms=5.0),
        ]
    )
    backend.put([LutEntry(host, key, median_ms=2.0, min_ms=1.9, max_ms=2.1, runs=5)])
    assert backend.get(host, [key, other]) == {key: LutEntry(host, key, median_ms=2.0, min_ms=1.9, max_ms=2.1, runs=5)}
    assert backend.get(PHONE, [key])[key].median_ms == 5.0
    assert backend.get(host, []) == {}


def test_repeated_entries_are_pooled() -> None:
    host, key = latency.host_profile(1), OpKey("ADD", 8, 8, 4, 4, 0, 1, "NONE")
    pooled = latency.combine_entries(
        [LutEntry(host, key, median_ms=m, min_ms=m - 0.5, max_ms=m + 0.5, runs=2) for m in (1.0, 3.0, 2.0)]
    )
    assert pooled == [LutEntry(host, key, median_ms=2.0, min_ms=0.5, max_ms=3.5, runs=6)]


def test_predictions_sum_the_minimum_of_each_entry() -> None:
    keys = lut_probes.arch_keys(CONV_DOWN, 32, 32)
    instances = sum(n for _, n in keys)
    table = LatencyTable(PHONE)
    table.add(LutEntry(PHONE, key, median_ms=2.0, min_ms=1.5, max_ms=3.0, runs=5) for key, _ in keys)
    assert table.predict(CONV_DOWN, 32, 32) == pytest.approx(1.5 * instances)
    assert LutEntry(PHONE, keys[0][0], median_ms=2.0).ms == 2.0  # an imported row without min_ms: its median


@pytest.fixture(scope="module")
def add_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lut_probes.write_probe(OpKey("ADD", 16, 16, 4, 4, 0, 1, "NONE"), tmp_path_factory.mktemp("probe"))


def test_timing_reads_thread_cpu_time_with_one_thread_and_extends_short_runs(add_probe: Path) -> None:
    timing = tflite.time_tflite(add_probe, runs=2, warmup=0, min_total_ms=2.0, max_runs=50)
    assert timing.clock == "thread-cpu" and 2 < timing.runs <= 50 and len(timing.samples_ms) == timing.runs
    assert timing.min_ms == min(timing.samples_ms) <= timing.median_ms <= timing.max_ms
    assert tflite.time_tflite(add_probe, runs=3, warmup=0).runs == 3
    assert tflite.time_tflite(add_probe, runs=1, warmup=0, threads=2).clock == "wall"
    assert tflite.time_tflite(add_probe, runs=1, warmup=0, clock="wall").clock == "wall"


def test_timing_refuses_a_cpu_clock_for_several_threads_and_bad_arguments(add_probe: Path) -> None:
    with pytest.raises(ExportError, match="one thread's latency only, got threads=2"):
        tflite.time_tflite(add_probe, threads=2, clock="thread-cpu")
    with pytest.raises(ExportError, match="clock must be one of"):
        tflite.time_tflite(add_probe, clock="cpu")
    with pytest.raises(ExportError, match="min_total_ms=-1"):
        tflite.time_tflite(add_probe, min_total_ms=-1)


def test_thread_cpu_time_is_the_latency_of_an_undisturbed_call(add_probe: Path) -> None:
    """With one thread the invoke runs on the caller, so its CPU time is the call's work, not a pool's."""
    conv = lut_probes.write_probe(OpKey("CONV_2D", 128, 128, 16, 16, 3, 1, "RELU"), add_probe.parent)
    cpu = tflite.time_tflite(conv, runs=10, warmup=1)
    wall = tflite.time_tflite(conv, runs=10, warmup=1, clock="wall")
    assert 0.3 * wall.min_ms < cpu.min_ms < 3 * wall.median_ms
