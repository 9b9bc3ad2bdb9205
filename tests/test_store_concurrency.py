"""Several processes writing one store at once: nothing lost, duplicated or half-written, no lock errors."""

from __future__ import annotations

import multiprocessing
import traceback

from conftest import model_record
from sqlalchemy import func, select

from nnsearch.store.engine import Store
from nnsearch.store.integrity import check_integrity
from nnsearch.store.record import METRIC_CODE
from nnsearch.store.recording import record_stats_bulk, record_trial
from nnsearch.store.schema import NN, LatencyRun, Prm, PrmSet, Stat, TrainStat, TrialLink, Weights

WORKERS = 4
MODELS = 4  # every worker records every architecture: the nn names overlap
BULK_MODELS = 6


def worker(url: str, index: int, records: list, barrier, results) -> None:
    """Open the store (maybe creating it), then record overlapping models as fast as possible."""
    try:
        barrier.wait(timeout=60)
        store = Store(url)
        for number, record in records:
            record_trial(store, "race", number, record)
        rows = [
            {
                "task": "img-denoising",
                "dataset": "bulk",
                "metric": metric,
                "nn": f"Bulk-{m}",
                "transform": "none",
                "epoch": e,
                "prm": {"seed": m % 2},
                "accuracy": float(m + e),
                "duration": e,
            }
            for m in range(BULK_MODELS)
            for e in range(3)
            for metric in METRIC_CODE
        ]
        record_stats_bulk(
            store,
            rows,
            nn_code={f"Bulk-{m}": f"# {m}\n" for m in range(BULK_MODELS)},
            metric_code=METRIC_CODE,
            transform_code={"none": ""},
        )
        store.dispose()
        results.put((index, None))
    except BaseException:  # reported to the parent, which fails the test with it
        results.put((index, traceback.format_exc()))


def worker_records(index: int) -> list:
    """(trial number, record) pairs; built here so that workers need not import torch."""
    records = []
    for arch in range(MODELS):
        # own hyperparameters (new rows) and one record identical in every worker (stored once)
        records.append((index * 100 + arch, model_record(arch, {"lr": 0.001, "worker": index})))
        records.append((10_000 + arch, model_record(arch, {"lr": 0.001, "shared": True})))
    return records


def test_concurrent_writers(store_url):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(store_url, i, worker_records(i), barrier, results)) for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=180) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    errors = {i: tb for i, tb in outcomes.items() if tb}
    assert not errors, "\n".join(errors.values())

    store = Store(store_url, create=False)
    epochs = 2
    with store.read() as conn:

        def count(model, *where) -> int:
            return conn.scalar(select(func.count()).select_from(model).where(*where))

        models = MODELS * (WORKERS + 1)  # (nn, prm) pairs: one per worker plus the shared one
        assert count(NN) == MODELS + BULK_MODELS
        assert count(PrmSet) == WORKERS + 1 + 2
        assert count(Prm) == WORKERS * 2 + 2 + 2
        assert count(Stat, Stat.dataset == "builtin") == models * epochs * 2
        assert count(Stat, Stat.dataset == "bulk") == BULK_MODELS * 3 * 2
        assert count(TrainStat) == models * epochs
        assert count(Weights) == models
        assert count(TrialLink) == WORKERS * MODELS + MODELS
        assert count(LatencyRun) == MODELS  # identical measurements (same instant) are stored once
        duplicates = (
            select(Stat.task, Stat.dataset, Stat.metric, Stat.nn, Stat.epoch, Stat.transform, Stat.prm)
            .group_by(Stat.task, Stat.dataset, Stat.metric, Stat.nn, Stat.epoch, Stat.transform, Stat.prm)
            .having(func.count() > 1)
        )
        assert conn.execute(duplicates).all() == []
    assert check_integrity(store) == []
    store.dispose()
