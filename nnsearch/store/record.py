"""Writing results: one trial's model, hyperparameters, stats, latency and weights in one transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from nnsearch.store.engine import Store
from nnsearch.store.schema import (
    NN, LatencyRun, Metric, NNStat, Prm, Stat, TrainStat, Transform, TrialLink, Weights,
)

TASK = "img-denoising"

#: Code stored in the `metric` table for the metrics nnsearch records.
METRIC_CODE = {
    "psnr": "# PSNR on float images in [0, 1], no rounding: 10*log10(1/MSE); see nnsearch.metrics.psnr\n",
    "ssim": "# SSIM, 11x11 Gaussian window sigma 1.5, per channel, K1=0.01 K2=0.03; see nnsearch.metrics.ssim\n",
}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def prm_uid(prm: Mapping[str, Any]) -> str:
    """md5 of the hyperparameter dict's canonical JSON (the NN Dataset's uid)."""
    return md5(json.dumps(dict(prm), sort_keys=True, default=str))


@dataclass
class EpochRecord:
    """Validation quality and training diagnostics after one epoch."""

    epoch: int
    psnr: float
    ssim: float
    duration_ns: int
    train_loss: float | None = None
    val_loss: float | None = None
    grad_norm: float | None = None
    samples_per_s: float | None = None
    cpu_mem_mb: float | None = None
    gpu_mem_mb: float | None = None


@dataclass
class LatencyRecord:
    """A latency figure on one device profile."""

    device: str
    runtime: str
    runtime_version: str
    threads: int
    height: int
    width: int
    kind: str
    median_ms: float
    min_ms: float | None = None
    max_ms: float | None = None
    runs: int = 1


@dataclass
class ModelRecord:
    """Everything nnsearch keeps about one trained candidate."""

    nn: str
    code: str
    arch_json: str
    prm: dict[str, Any]
    dataset: str
    transform: str
    transform_code: str
    params: int
    macs: float
    macs_hw: tuple[int, int]
    depth: int
    model_size_bytes: int
    epochs: list[EpochRecord] = field(default_factory=list)
    latencies: list[LatencyRecord] = field(default_factory=list)
    weights: bytes | None = None
    task: str = TASK


def insert_ignore(session: Session, model: type, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows, silently keeping existing ones with the same key (any engine)."""
    rows = list(rows)
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    table = model.__table__
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table).prefix_with("IGNORE")
    else:
        existing = [r for r in rows if session.get(model, _pk(model, r)) is None]
        for row in existing:
            session.add(model(**row))
        return
    session.execute(stmt, rows)


def _pk(model: type, row: Mapping[str, Any]) -> tuple:
    return tuple(row[c.name] for c in model.__table__.primary_key.columns)


def write_model(session: Session, rec: ModelRecord) -> str:
    """Write a `ModelRecord` inside an open transaction; returns its prm uid."""
    uid = prm_uid(rec.prm)
    insert_ignore(session, NN, [{"name": rec.nn, "code": rec.code, "id": md5(rec.code), "arch": rec.arch_json}])
    insert_ignore(session, Transform, [{"name": rec.transform, "code": rec.transform_code, "id": md5(rec.transform_code)}])
    insert_ignore(session, Metric, [{"name": m, "code": c, "id": md5(c)} for m, c in METRIC_CODE.items()])
    insert_ignore(session, Prm, [{"uid": uid, "name": k, "value": json.dumps(v)} for k, v in rec.prm.items()])
    insert_ignore(session, NNStat, [{
        "nn": rec.nn, "params": rec.params, "macs": rec.macs, "macs_height": rec.macs_hw[0],
        "macs_width": rec.macs_hw[1], "depth": rec.depth, "model_size_bytes": rec.model_size_bytes,
    }])
    for ep in rec.epochs:
        _write_epoch(session, rec, uid, ep)
    for lat in rec.latencies:
        session.add(LatencyRun(nn=rec.nn, **lat.__dict__))
    if rec.weights is not None:
        session.merge(Weights(nn=rec.nn, prm=uid, state=rec.weights, sha256=hashlib.sha256(rec.weights).hexdigest()))
    return uid


def _write_epoch(session: Session, rec: ModelRecord, uid: str, ep: EpochRecord) -> None:
    key = dict(task=rec.task, dataset=rec.dataset, nn=rec.nn, transform=rec.transform, prm=uid, epoch=ep.epoch)
    for metric, value in (("psnr", ep.psnr), ("ssim", ep.ssim)):
        exists = session.scalar(select(Stat.id).filter_by(metric=metric, **key))
        if exists is not None:
            continue
        stat = Stat(metric=metric, accuracy=float(value), duration=int(ep.duration_ns), **key)
        session.add(stat)
        session.flush()
        if metric == "psnr":
            session.add(TrainStat(
                stat_id=stat.id, train_loss=ep.train_loss, val_loss=ep.val_loss, grad_norm=ep.grad_norm,
                samples_per_s=ep.samples_per_s, cpu_mem_mb=ep.cpu_mem_mb, gpu_mem_mb=ep.gpu_mem_mb,
            ))


def record_trial(store: Store, study: str, trial_number: int, rec: ModelRecord, state: str = "complete") -> str:
    """Record one trial's model and link it to its Optuna trial, all or nothing."""

    def work(session: Session) -> str:
        uid = write_model(session, rec)
        session.merge(TrialLink(
            study=study, trial_number=trial_number, nn=rec.nn, prm=uid,
            task=rec.task, dataset=rec.dataset, state=state,
        ))
        return uid

    return store.write(work)
