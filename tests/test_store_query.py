"""The query API: data(), run_data() and study_results()."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pytest
from conftest import model_record

from nnsearch.store.dataset_api import EXTRA_COLUMNS, NND_COLUMNS, data, run_data
from nnsearch.store.engine import Store
from nnsearch.store.hashing import prm_uid
from nnsearch.store.query import study_results
from nnsearch.store.record import METRIC_CODE, LatencyRecord
from nnsearch.store.recording import record_stats_bulk, record_trial

PRM_A = {"lr": 0.001, "batch": 4}
PRM_B = {"lr": 0.0005, "batch": 8, "crops": [32, 64]}


@pytest.fixture
def filled(store):
    """3 models x 2 hyperparameter sets x 2 epochs, two studies, latency on two devices."""
    number = 0
    for arch in range(3):
        for prm, study in ((PRM_A, "alpha"), (PRM_B, "beta")):
            rec = model_record(arch, dict(prm))
            if arch == 0:  # a second device, and a larger input that must win on host-cpu
                rec.latencies += [
                    LatencyRecord(
                        "phone-npu",
                        "litert",
                        "2.3.0",
                        4,
                        1088,
                        1920,
                        "measured",
                        median_ms=34.0,
                        created_at=datetime(2026, 1, 2),
                    ),
                    LatencyRecord(
                        "host-cpu",
                        "litert",
                        "2.3.0",
                        1,
                        1088,
                        1920,
                        "measured",
                        median_ms=900.0,
                        created_at=datetime(2026, 1, 3),
                    ),
                    LatencyRecord(
                        "host-cpu",
                        "litert",
                        "2.3.0",
                        1,
                        1088,
                        1920,
                        "predicted",
                        median_ms=1.0,
                        created_at=datetime(2026, 1, 4),
                    ),
                ]
            record_trial(store, study, number, rec)
            number += 1
    return store


def test_columns_and_values(filled):
    frame = data(db=filled)
    assert list(frame.columns) == [*NND_COLUMNS, *EXTRA_COLUMNS, "latency_ms@host-cpu", "latency_ms@phone-npu"]
    assert len(frame) == 3 * 2 * 2 * 2
    rec = model_record(1, dict(PRM_B))
    row = frame[
        (frame.nn == rec.nn) & (frame.metric == "psnr") & (frame.epoch == 1) & (frame.prm_uid == prm_uid(PRM_B))
    ].iloc[0]
    assert row.prm == PRM_B and row.nn_code == rec.code and row.transform_code == rec.transform_code
    assert row.metric_code == METRIC_CODE["psnr"] and row["transform"] == rec.transform
    assert (row.accuracy, row.duration, row.params, row.macs) == (rec.epochs[1].psnr, 2 * 10**9, 1001, 5e6)
    assert row["latency_ms@host-cpu"] == 4.5 and math.isnan(row["latency_ms@phone-npu"])  # min over runs
    first = frame[frame.nn == model_record(0).nn].iloc[0]
    assert first["latency_ms@host-cpu"] == 900.0 and first["latency_ms@phone-npu"] == 34.0
    ordered = frame[["task", "dataset", "metric", "nn", "epoch"]].apply(tuple, axis=1).tolist()
    assert ordered == sorted(ordered)
    assert frame.epoch.dtype == "int64" and frame.duration.dtype == "Int64"


def test_filters_combine_and_lists_mean_any_of(filled):
    nn0, nn1 = model_record(0).nn, model_record(1).nn
    assert len(data(db=filled, nn=nn0)) == 8
    assert len(data(db=filled, nn=(nn0, nn1))) == 16
    assert len(data(db=filled, nn=[nn0, nn1], metric="ssim", epoch=1)) == 4
    assert len(data(db=filled, task="img-denoising", dataset="builtin", epoch=[0, 1])) == 24
    assert data(db=filled, dataset="other").empty
    assert len(data(db=filled, nn=())) == 0


def test_prm_filter_by_values_or_uid(filled):
    assert set(data(db=filled, prm={"batch": 8}).prm_uid) == {prm_uid(PRM_B)}
    assert len(data(db=filled, prm={"batch": [4, 8], "lr": 0.001})) == 12
    assert data(db=filled, prm={"batch": 16}).empty
    assert set(data(db=filled, prm=prm_uid(PRM_A)).prm_uid) == {prm_uid(PRM_A)}
    assert len(data(db=filled, prm=[prm_uid(PRM_A), prm_uid(PRM_B)])) == 24


def test_study_filter(filled):
    frame = data(db=filled, study="beta")
    assert len(frame) == 12 and set(frame.prm_uid) == {prm_uid(PRM_B)}
    assert len(data(db=filled, study=("alpha", "beta"))) == 24
    assert data(db=filled, study="nobody").empty


def test_only_best_accuracy_keeps_the_best_rows_and_ties(filled):
    frame = data(db=filled, only_best_accuracy=True, metric="psnr")
    assert len(frame) == 3 * 2 * 2  # per nn and epoch both prm sets tie (same scores): both kept
    assert len(frame.drop_duplicates(["nn", "epoch"])) == 6
    record_trial(filled, "alpha", 99, model_record(0, {"lr": 0.1}, epochs=1))  # same scores as PRM_A: a tie
    best = data(db=filled, only_best_accuracy=True, metric="psnr", nn=model_record(0).nn, epoch=0)
    assert len(best) == 3 and best.accuracy.nunique() == 1


def test_only_best_picks_the_maximum(store):
    rows = [
        {
            "task": "t",
            "dataset": "d",
            "metric": "psnr",
            "nn": "Net",
            "transform": "none",
            "epoch": 0,
            "prm": {"lr": lr},
            "accuracy": acc,
            "duration": 1,
        }
        for lr, acc in ((1, 30.0), (2, 32.5), (3, 31.0))
    ]
    record_stats_bulk(store, rows, nn_code={"Net": ""}, metric_code={"psnr": ""}, transform_code={"none": ""})
    best = data(db=store, only_best_accuracy=True)
    assert best.accuracy.tolist() == [32.5] and best.prm.tolist() == [{"lr": 2}]


def test_max_rows(filled):
    assert len(data(db=filled, max_rows=5)) == 5
    assert data(db=filled, max_rows=5).equals(data(db=filled).head(5))


def test_device_selects_latency_columns_without_dropping_rows(filled):
    frame = data(db=filled, device="phone-npu")
    assert [c for c in frame.columns if c.startswith("latency")] == ["latency_ms@phone-npu"]
    assert len(frame) == 24 and frame["latency_ms@phone-npu"].notna().sum() == 8
    none = data(db=filled, device="nowhere")
    assert none["latency_ms@nowhere"].isna().all()


def test_db_may_be_a_url_a_path_or_a_store(filled, tmp_path):
    expected = data(db=filled)
    pd.testing.assert_frame_equal(data(db=filled.url), expected)
    if filled.dialect == "sqlite":
        pd.testing.assert_frame_equal(data(db=filled.url.removeprefix("sqlite:///")), expected)


def test_empty_store_gives_the_columns(store):
    frame = data(db=store)
    assert frame.empty and list(frame.columns) == [*NND_COLUMNS, *EXTRA_COLUMNS]


def test_run_data(filled):
    runs = run_data(db=filled)  # each model's records came twice (two trials): stored once
    assert len(runs) == 3 + 3
    assert list(runs.columns)[:3] == ["nn", "device", "runtime"]
    assert len(run_data(db=filled, device="phone-npu")) == 1
    assert len(run_data(db=filled, nn=model_record(0).nn, kind=("predicted", "measured"))) == 4
    assert len(run_data(db=filled, max_rows=3)) == 3


def test_study_results_keeps_its_shape(filled):
    frame = study_results(filled, "alpha")
    assert list(frame.columns) == [
        "trial",
        "nn",
        "state",
        "dataset",
        "psnr",
        "ssim",
        "latency_ms",
        "measured_ms",
        "predicted_ms",
        "params",
        "macs",
        "rung",
    ]
    assert frame.trial.tolist() == [0, 2, 4]
    assert frame.psnr.tolist() == [model_record(a).epochs[-1].psnr for a in range(3)]


def test_a_bulk_record_of_400_models_reads_back_whole(tmp_path):
    """20,000 rows in one bulk record read back by data() (speed: benchmarks/store.py)."""
    store = Store(f"sqlite:///{tmp_path / 'fast.db'}")
    n_models, rows = 400, []
    for m in range(n_models):
        for p in range(5):
            prm = {"lr": 1e-4 * (m * 5 + p + 1), "batch": 4}
            rows += [
                {
                    "task": "t",
                    "dataset": "d",
                    "metric": metric,
                    "nn": f"Net-{m}",
                    "transform": "none",
                    "epoch": e,
                    "prm": prm,
                    "accuracy": 30.0,
                    "duration": 1,
                }
                for e in range(5)
                for metric in ("psnr", "ssim")
            ]
    record_stats_bulk(
        store,
        rows,
        nn_code={f"Net-{m}": "# " + "x" * 5000 for m in range(n_models)},
        metric_code={"psnr": "", "ssim": ""},
        transform_code={"none": ""},
    )
    frame = data(db=store)
    store.dispose()
    assert len(frame) == 20_000
    assert frame["nn"].nunique() == n_models and set(frame["metric"]) == {"psnr", "ssim"}


def test_student_latency_rule(store):
    """Largest input, then fewest threads; measured before predicted; min over runs, pooled; per precision."""
    from nnsearch.store.timings import student_latency

    def run(height, kind, ms, low=None, threads=1, precision="fp32", second=0):
        return LatencyRecord(
            "host-cpu",
            "litert",
            "2.3.0",
            threads,
            height,
            height,
            kind,
            precision=precision,
            median_ms=ms,
            min_ms=low,
            created_at=datetime(2026, 1, 1, 0, 0, second),
        )

    rec = model_record(0, latency_ms=None)
    rec.latencies += [
        run(64, "measured", 10.0, 9.0),
        run(64, "measured", 11.0, 8.5, second=1),
        run(64, "predicted", 7.0),
        run(64, "measured", 6.0, 5.0, threads=2),
        run(32, "measured", 2.0, 1.5),
        run(96, "predicted", 30.0),
        run(64, "measured", 3.0, precision="int8"),
    ]
    record_trial(store, "rule", 0, rec)
    nn = rec.nn
    top = student_latency(store, nn)  # unset: the largest input (96), only predicted there
    assert (top.height, top.kind, top.ms) == (96, "predicted", 30.0)
    at64 = student_latency(store, nn, height=64, width=64)
    assert (at64.threads, at64.kind, at64.ms) == (1, "measured", 8.5)  # min of the two measurements' minimums
    assert at64.predicted.ms == 7.0 and at64.measured.runs == 2
    assert student_latency(store, nn, height=64, width=64, threads=2).ms == 5.0
    assert student_latency(store, nn, precision="int8").ms == 3.0
    assert student_latency(store, nn, height=48, width=48) is None
    assert student_latency(store, nn, "phone-npu") is None


def test_study_reader_reads_only_new_trials_including_late_lower_numbers(store):
    from nnsearch.store.query import StudyReader
    from nnsearch.store.timings import LatencyQuery

    record_trial(store, "inc", 0, model_record(0))
    record_trial(store, "inc", 2, model_record(2))  # trial 1 still running
    reader = StudyReader(store, "inc", LatencyQuery("host-cpu", 64, 96, 1))
    assert reader.results()["trial"].tolist() == [0, 2]
    record_trial(store, "inc", 1, model_record(1), state="stopped")
    assert reader.refresh() == 1 and reader.refresh() == 0
    assert reader.results()["trial"].tolist() == [0, 1, 2]
    assert reader.epochs("psnr", "stopped")["trial"].tolist() == [1, 1]
    record_trial(store, "inc", 3, model_record(3))
    assert reader.refresh() == 1
    pd.testing.assert_frame_equal(reader.results(), study_results(store, "inc"))
