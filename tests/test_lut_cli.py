"""`nnsearch lut ...`, `nnsearch profile` and the search's latency service (predict, record)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from nnsearch.cli import main
from nnsearch.errors import LatencyError
from nnsearch.latency import service as latency_service
from nnsearch.latency.probes import KEY_COLUMNS, arch_keys, space_keys
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.store.engine import Store
from nnsearch.store.record import Bundle
from nnsearch.store.recording import record_bundle
from nnsearch.store.schema import LatencyRun

TINY = Arch((8, 16), (1, 1), ("concat",), "residual", "conv", True)
RES = 32


@pytest.fixture
def db(tmp_path: Path) -> str:
    latency_service.clear_caches()
    return str(tmp_path / "lut.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*KEY_COLUMNS, "median_ms"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def latency_rows(db: str) -> list[LatencyRun]:
    store = Store(db, create=False)
    try:
        with store.session() as session:
            return list(session.scalars(select(LatencyRun)))
    finally:
        store.dispose()


def test_build_measures_once_then_reuses(
    db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "fresh-cache"))  # no machine table measured before
    total = len(space_keys(load_space("tiny"), RES, RES))
    args = ("lut", "build", "--space", "tiny", "--resolution", f"{RES}x{RES}", "--runs", "1", "--db", db)
    code, out, _ = run(capsys, *args)
    assert code == 0 and f"measured {total}, reused 0 of {total} keys" in out
    code, out, _ = run(capsys, *args)
    assert code == 0 and f"measured 0, reused {total} of {total} keys" in out
    code, out, _ = run(capsys, "lut", "show", "--db", db)
    assert code == 0 and out.startswith("host-cpu (tflite-cpu") and f"{total} entries ({total} measured)" in out
    code, _, err = run(capsys, "lut", "build", "--device", "phone-x", "--space", "tiny", "--db", db)
    assert code == 2 and "export-probes" in err


def test_export_probes_writes_files_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "probes"
    code, out, _ = run(
        capsys, "lut", "export-probes", "--space", "tiny", "--resolution", "32x64", "--out", str(out_dir)
    )
    with (out_dir / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and f"wrote {len(rows)} probe(s)" in out
    assert len(rows) == len(space_keys(load_space("tiny"), 32, 64))
    assert all((out_dir / row["file"]).is_file() for row in rows)
    assert len(list(out_dir.glob("*.tflite"))) == len(rows)


def test_imported_device_predicts_the_sum_of_its_numbers(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = arch_keys(TINY, RES, RES)
    values = {key: 0.25 * (i + 1) for i, (key, _) in enumerate(keys)}
    rows = [{**key._asdict(), "median_ms": values[key]} for key, _ in keys]
    code, out, _ = run(
        capsys,
        "lut",
        "import",
        str(write_csv(tmp_path / "phone.csv", rows)),
        "--device",
        "phone-x",
        "--runtime-version",
        "tflite 2.16",
        "--db",
        db,
    )
    assert code == 0 and f"{len(rows)} entries for phone-x" in out
    store = Store(db)
    try:
        expected = sum(values[key] * count for key, count in keys)
        assert latency_service.predict_latency(store, TINY, "phone-x", RES, RES) == pytest.approx(expected)
        with pytest.raises(LatencyError, match=r"lacks \d+ of the \d+ op keys.*nnsearch lut import"):
            latency_service.predict_latency(store, TINY, "phone-x", 64, 64)
        with pytest.raises(LatencyError, match="no latency table for device 'phone-z'"):
            latency_service.predict_latency(store, TINY, "phone-z", RES, RES)
    finally:
        store.dispose()
    code, out, _ = run(capsys, "lut", "show", "--device", "phone-x", "--db", db)
    assert "phone-x (tflite-benchmark_model, tflite 2.16, 1 thread(s))" in out and "imported" in out


def test_bad_csv_exits_2_naming_file_row_and_column(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {**next(iter(arch_keys(TINY, RES, RES)))[0]._asdict(), "median_ms": 0.5}
    cases = [
        ([good, {**good, "in_w": "x"}], r"bad\.csv:3: column 'in_w' is 'x'"),
        ([good, {**good, "op": "SOFTMAX"}], r"bad\.csv:3: column 'op' is 'SOFTMAX'"),
        ([{**good, "median_ms": "-1"}], r"bad\.csv:2: column 'median_ms'"),
        ([], r"bad\.csv has a header but no latency rows"),
    ]
    for rows, message in cases:
        path = write_csv(tmp_path / "bad.csv", rows)
        code, _, err = run(capsys, "lut", "import", str(path), "--device", "phone-x", "--db", db)
        assert code == 2 and re.search(message, err), err
    (tmp_path / "bad.csv").write_text("op,in_h\nADD,8\n")
    code, _, err = run(capsys, "lut", "import", str(tmp_path / "bad.csv"), "--device", "phone-x", "--db", db)
    assert code == 2 and "bad.csv lacks column(s) ['in_w'" in err


def test_host_predictions_measure_missing_keys_and_are_recorded(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "fresh-cache"))  # no machine table measured before
    store = Store(db)
    try:
        with pytest.raises(LatencyError, match="nnsearch lut build --device host-cpu"):
            latency_service.predict_latency(store, TINY, "host-cpu", RES, RES, measure_missing=False)
        ms = latency_service.predict_latency(store, TINY, "host-cpu", RES, RES)
        assert ms > 0
        latency_service.clear_caches()  # the entries now come from the store
        assert latency_service.predict_latency(store, TINY, "host-cpu", RES, RES, measure_missing=False) == ms
        _store_model(store, TINY)
        latency_service.record_prediction(store, TINY.name, ms, "host-cpu", RES, RES)
    finally:
        store.dispose()
    (row,) = latency_rows(db)
    assert (row.nn, row.kind, row.device, row.median_ms, row.min_ms, row.height) == (
        TINY.name,
        "predicted",
        "host-cpu",
        ms,
        ms,
        RES,
    )


def _store_model(store: Store, arch: Arch) -> None:
    arch_json = json.dumps(arch.to_dict())
    record_bundle(store, Bundle(nn_code={arch.name: arch.model_code()}, nn_arch={arch.name: arch_json}))


def test_profile_records_a_measured_latency_run(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(db)
    _store_model(store, TINY)
    store.dispose()
    code, out, _ = run(
        capsys, "profile", TINY.name, "--resolution", "32x64", "--runs", "3", "--warmup", "1", "--db", db
    )
    assert code == 0 and f"profile {TINY.name}: min" in out and "thread-cpu clock" in out
    (row,) = latency_rows(db)
    assert (row.kind, row.device, row.threads, row.height, row.width, row.runs) == (
        "measured",
        "host-cpu",
        1,
        32,
        64,
        3,
    )
    assert row.runtime_version.startswith("ai-edge-litert") and row.median_ms > 0
    code, _, err = run(capsys, "profile", "DenoiseUNet-absent", "--resolution", "32x32", "--db", db)
    assert code == 2 and "no model 'DenoiseUNet-absent'" in err


def test_a_second_store_on_this_machine_measures_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnsearch.latency.machine_table import FILE_NAME, MachineLut
    from nnsearch.latency.service import clear_caches, predict_latency

    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    total = len(space_keys(load_space("tiny"), RES, RES))
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("first.db", "second.db"))
    build = ("lut", "build", "--space", "tiny", "--resolution", f"{RES}x{RES}", "--runs", "1", "--db")
    code, out, _ = run(capsys, *build, first)
    assert code == 0 and f"measured {total}, reused 0 of {total} keys" in out
    assert len(MachineLut(tmp_path / "cache" / FILE_NAME)) == total
    code, out, _ = run(capsys, *build, second)
    assert code == 0 and f"copied {total} entries" in out and f"measured 0, reused {total} of {total} keys" in out
    code, out, _ = run(capsys, "lut", "show", "--db", second)
    assert f"{total} entries ({total} measured)" in out
    arch = load_space("tiny").reference("tiny-unet")
    clear_caches()
    predictions = [
        predict_latency(Store(url), arch, "host-cpu", RES, RES, measure_missing=False) for url in (first, second)
    ]
    assert predictions[0] == predictions[1]
    from nnsearch.search.study import LatencyConfig, Study, StudyConfig  # a study in a third new store starts at once

    config = StudyConfig.build(
        name="first-trial", space=load_space("tiny"), latency=LatencyConfig(height=RES, width=RES)
    )
    third = Store(f"sqlite:///{tmp_path / 'third.db'}")
    Study(config, third).fill_lookup_table()
    out = capsys.readouterr().out
    assert f"copied {total} entries" in out and "lookup table: measured" not in out
    third.dispose()


def test_an_unreadable_machine_table_is_moved_aside_and_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnsearch.latency.machine_table import FILE_NAME, MachineLut

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILE_NAME).write_bytes(b"not an sqlite file at all " * 100)
    monkeypatch.setenv("NNSEARCH_CACHE", str(cache))
    total = len(space_keys(load_space("tiny"), RES, RES))
    code, out, err = run(
        capsys,
        "lut",
        "build",
        "--space",
        "tiny",
        "--resolution",
        f"{RES}x{RES}",
        "--runs",
        "1",
        "--db",
        f"sqlite:///{tmp_path / 'store.db'}",
    )
    assert code == 0 and f"measured {total}, reused 0 of {total} keys" in out
    assert "is not a readable machine lookup table" in err and "started a new one" in err
    assert len(list(cache.glob(f"{FILE_NAME}.unreadable-*"))) == 1
    assert len(MachineLut(cache / FILE_NAME)) == total
    blocked = MachineLut(tmp_path / "a-file" / FILE_NAME)  # its folder cannot be made: skipped, with a warning
    (tmp_path / "a-file").write_text("x")
    assert blocked.get(latency_host(), []) == {} and len(blocked) == 0
    assert "cannot be used" in capsys.readouterr().err


def test_workers_share_the_machine_table(tmp_path: Path) -> None:
    import threading

    from nnsearch.latency.machine_table import MachineLut
    from nnsearch.latency.table import LutEntry

    keys = space_keys(load_space("tiny"), RES, RES)
    device = latency_host()
    path = tmp_path / "shared.sqlite"

    def write(part: int) -> None:
        table = MachineLut(path)
        for key in keys[part::4]:
            table.put([LutEntry(device, key, median_ms=1.0 + part, min_ms=0.5, runs=3)])

    threads = [threading.Thread(target=write, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = MachineLut(path).get(device, keys)
    assert set(found) == set(keys) and all(entry.ms == 0.5 for entry in found.values())
    assert MachineLut(path, machine="another-machine").get(device, keys) == {}


def latency_host():  # -> DeviceProfile
    from nnsearch.latency.table import host_profile

    return host_profile(1, "host-cpu")
