"""Recording: one trial all-or-nothing, idempotent writes, bulk stats."""

from __future__ import annotations

import hashlib

import pytest
from conftest import model_record
from sqlalchemy import func, select

from nnsearch.errors import StoreError
from nnsearch.store.hashing import prm_uid
from nnsearch.store.record import METRIC_CODE, LatencyRecord
from nnsearch.store.recording import record_stats_bulk, record_trial
from nnsearch.store.schema import (
    NN,
    LatencyRun,
    Metric,
    NNStat,
    Prm,
    PrmSet,
    Stat,
    TrainStat,
    Transform,
    TrialLink,
    Weights,
)

TABLES = (NN, Metric, Transform, PrmSet, Prm, Stat, TrainStat, NNStat, LatencyRun, Weights, TrialLink)


def counts(store) -> dict[str, int]:
    with store.read() as conn:
        return {t.__tablename__: conn.scalar(select(func.count()).select_from(t)) for t in TABLES}


def test_record_trial_writes_every_table(store):
    rec = model_record(prm={"lr": 0.002, "batch": 8, "crops": [32, 64]})
    uid = record_trial(store, "study", 3, rec)
    assert uid == prm_uid(rec.prm)
    assert counts(store) == {
        "nn": 1,
        "metric": 2,
        "transform": 1,
        "prm_set": 1,
        "prm": 3,
        "stat": 4,
        "train_stat": 2,
        "nn_stat": 1,
        "latency_run": 1,
        "weights": 1,
        "trial_link": 1,
    }
    with store.read() as conn:
        nn = conn.execute(select(NN)).one()
        assert nn.id == hashlib.md5(rec.code.encode()).hexdigest() and nn.arch == rec.arch_json
        values = dict(conn.execute(select(Prm.name, Prm.value)).all())
        assert values == {"lr": "0.002", "batch": "8", "crops": "[32, 64]"}
        link = conn.execute(select(TrialLink)).one()
        assert (link.study, link.trial_number, link.nn, link.prm, link.state) == ("study", 3, rec.nn, uid, "complete")
        weights = conn.execute(select(Weights)).one()
        assert weights.state == b"w" and weights.sha256 == hashlib.sha256(b"w").hexdigest()
        epochs = conn.execute(select(Stat.epoch, Stat.accuracy).where(Stat.metric == "psnr").order_by(Stat.epoch))
        assert [tuple(r) for r in epochs] == [(0, rec.epochs[0].psnr), (1, rec.epochs[1].psnr)]


def test_recording_the_same_trial_twice_stores_it_once(store):
    rec = model_record()
    record_trial(store, "study", 0, rec)
    before = counts(store)
    record_trial(store, "study", 0, rec)
    assert counts(store) == before


def test_trial_link_and_weights_are_updated(store):
    record_trial(store, "study", 0, model_record(epochs=0, weights=None, latency_ms=None), state="failed")
    record_trial(store, "study", 0, model_record(weights=b"better"), state="complete")
    with store.read() as conn:
        assert conn.scalar(select(TrialLink.state)) == "complete"
        assert conn.scalar(select(Weights.state)) == b"better"


def test_a_failing_record_leaves_nothing_behind(store):
    record_trial(store, "study", 0, model_record(arch=0))
    before = counts(store)
    bad = model_record(arch=1)
    bad.latencies.append(LatencyRecord("host-cpu", "litert", "2.3.0", 1, 64, 96, kind=None, median_ms=1.0))
    with pytest.raises(StoreError, match="writing to"):
        record_trial(store, "study", 1, bad)
    assert counts(store) == before


def test_empty_hyperparameter_set_is_a_real_set(store):
    uid = record_trial(store, "study", 0, model_record(prm={}))
    with store.read() as conn:
        assert conn.scalar(select(PrmSet.uid)) == uid
        assert conn.scalar(select(func.count()).select_from(Prm)) == 0


def bulk_rows(n_models: int, prm_sets: int = 2, epochs: int = 3) -> list[dict]:
    rows = []
    for m in range(n_models):
        for p in range(prm_sets):
            prm = {"lr": 10.0 ** -(p + 2), "batch": 2**p}
            for e in range(epochs):
                for metric in METRIC_CODE:
                    rows.append(
                        {
                            "task": "img-denoising",
                            "dataset": "bulk",
                            "metric": metric,
                            "nn": f"Net-{m}",
                            "transform": "none",
                            "epoch": e,
                            "prm": prm,
                            "accuracy": 20.0 + m + p / 10 + e,
                            "duration": 1000 * (e + 1),
                        }
                    )
    return rows


def bulk_codes(n_models: int) -> dict:
    return {
        "nn_code": {f"Net-{m}": f"# net {m}\n" for m in range(n_models)},
        "metric_code": METRIC_CODE,
        "transform_code": {"none": ""},
    }


def test_bulk_stats_are_written_once(store):
    rows = bulk_rows(5)
    assert record_stats_bulk(store, rows, **bulk_codes(5)) == len(rows) == 60
    assert record_stats_bulk(store, rows, **bulk_codes(5)) == 0
    more = bulk_rows(6)
    assert record_stats_bulk(store, more, **bulk_codes(6)) == 12
    found = counts(store)
    assert (found["stat"], found["prm_set"], found["prm"], found["nn"]) == (72, 2, 4, 6)


def test_bulk_with_an_unknown_model_writes_nothing(store):
    rows = bulk_rows(3)
    codes = bulk_codes(3)
    del codes["nn_code"]["Net-2"]
    with pytest.raises(StoreError, match="(?i)foreign key"):
        record_stats_bulk(store, rows, **codes)
    assert counts(store)["stat"] == 0 and counts(store)["nn"] == 0


def test_bulk_keeps_an_explicit_uid(store):
    rows = [dict(r, prm_uid="nnd-uid-1") for r in bulk_rows(1, prm_sets=1, epochs=1)]
    record_stats_bulk(store, rows, **bulk_codes(1))
    with store.read() as conn:
        assert set(conn.scalars(select(Stat.prm))) == {"nnd-uid-1"}
        assert dict(conn.execute(select(Prm.name, Prm.value).where(Prm.uid == "nnd-uid-1")).all()) == {
            "lr": "0.01",
            "batch": "1",
        }


def test_bulk_row_without_hyperparameters_is_an_error(store):
    row = bulk_rows(1, 1, 1)[0]
    del row["prm"]
    with pytest.raises(StoreError, match="neither a prm dict nor a prm_uid"):
        record_stats_bulk(store, [row], **bulk_codes(1))
