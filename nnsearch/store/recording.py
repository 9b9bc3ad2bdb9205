"""Writing results: models, hyperparameters, stats, latency and weights, each write all-or-nothing.

Everything goes through `write_bundle`, which inserts rows with dialect-aware
bulk "insert or ignore" statements (`nnsearch.store.dialect`), so writing the
same facts twice, or from several processes at once, stores them once.
`write_model`/`record_trial` write one trained candidate; `record_stats_bulk`
writes many stat rows (an import, a benchmark) in one transaction.

One rule for a model recorded twice with the same hyperparameter set (a retried
trial, two workers, a re-import): the first record is kept, its stats and its
weights alike, so the stored weights are the ones that produced the stored
stats. Only the trial link (which Optuna trial a record belongs to) is updated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import Session

from nnsearch.common.precision import Precision
from nnsearch.errors import StoreError
from nnsearch.store.dialect import Executor, insert_ignore, upsert
from nnsearch.store.engine import Store
from nnsearch.store.hashing import encode_value, md5, prm_uid
from nnsearch.store.limits import check_row, finite_or_none
from nnsearch.store.record import (
    METRIC_CODE,
    NN_STAT_FIELDS,
    STAT_KEY,
    TRAIN_FIELDS,
    Bundle,
    ModelRecord,
    precision_metric_code,
)
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
    utcnow,
)

_CHUNK = 500


def write_bundle(executor: Executor, bundle: Bundle) -> int:
    """Write a `Bundle` inside an open transaction; returns the number of stat rows given.

    Every value is checked against its column first (`nnsearch.store.limits`), and
    a hyperparameter uid that names other values than the stored set (or than
    another row of the bundle) is refused (`StoreError` naming both sets).
    """
    stats, sets = _resolve_prm(bundle)
    _check_limits(bundle, stats, sets)
    _check_stored_sets(executor, sets, {row["prm"]: row["source"] for row in stats if row.get("source")})
    nn_rows = [{"name": n, "code": c, "id": md5(c), "arch": bundle.nn_arch.get(n)} for n, c in bundle.nn_code.items()]
    insert_ignore(executor, NN, nn_rows)
    _fill_model_gaps(executor, nn_rows)
    for model, codes in ((Metric, bundle.metric_code), (Transform, bundle.transform_code)):
        insert_ignore(executor, model, [{"name": n, "code": c, "id": md5(c)} for n, c in codes.items()])
    insert_ignore(executor, PrmSet, [{"uid": uid} for uid in sets])
    insert_ignore(
        executor,
        Prm,
        [{"uid": uid, "name": k, "value": encode_value(v)} for uid, prm in sets.items() for k, v in prm.items()],
    )
    insert_ignore(
        executor, NNStat, [{"nn": n, **{f: s[f] for f in NN_STAT_FIELDS}} for n, s in bundle.nn_stats.items()]
    )
    insert_ignore(executor, Stat, [{c: row[c] for c in (*STAT_KEY, "accuracy", "duration")} for row in stats])
    _write_train_stats(executor, [row for row in stats if row.get("train") is not None])
    insert_ignore(executor, LatencyRun, bundle.latencies)
    return len(stats)


def _fill_model_gaps(executor: Executor, nn_rows: list[dict[str, Any]]) -> None:
    """Code and architecture learnt later fill a stored model's empty code / missing architecture."""
    table = cast(Table, NN.__table__)  # Core statements, one executemany each, rows in name order (one lock order)
    nn_rows = sorted(nn_rows, key=lambda r: r["name"])
    codes = [{"b_name": r["name"], "b_code": r["code"], "b_id": r["id"]} for r in nn_rows if r["code"]]
    if codes:
        executor.execute(
            table.update()
            .where(table.c.name == bindparam("b_name"), table.c.code == "")
            .values(code=bindparam("b_code"), id=bindparam("b_id")),
            codes,
        )
    archs = [{"b_name": r["name"], "b_arch": r["arch"]} for r in nn_rows if r["arch"]]
    if archs:
        executor.execute(
            table.update()
            .where(table.c.name == bindparam("b_name"), table.c.arch.is_(None))
            .values(arch=bindparam("b_arch")),
            archs,
        )


def _resolve_prm(bundle: Bundle) -> tuple[list[dict[str, Any]], dict[str, Mapping[str, Any]]]:
    """Stat rows with `prm` replaced by its uid, and the hyperparameter sets by uid."""
    sets: dict[str, Mapping[str, Any]] = dict(bundle.prm_sets)
    by_object: dict[int, str] = {}  # the same dict object shared by many rows is hashed once
    stats = []
    for row in bundle.stats:
        prm = row.get("prm")
        uid = row.get("prm_uid")
        if uid is None:
            if not isinstance(prm, Mapping):
                raise StoreError(f"stat row {dict(row)} has neither a prm dict nor a prm_uid")
            uid = by_object.get(id(prm)) or prm_uid(prm)
            by_object[id(prm)] = uid
        if isinstance(prm, Mapping):
            known = sets.setdefault(uid, prm)
            if known is not prm and _encoded(known) != _encoded(prm):
                raise StoreError(_uid_clash(uid, _encoded(known), _encoded(prm), row.get("source")))
        duration = row["duration"]
        stats.append(
            {
                **row,
                "prm": uid,
                "accuracy": float(row["accuracy"]),
                "duration": None if duration is None else int(duration),
                "epoch": int(row["epoch"]),
                "run": int(row.get("run", 0)),
                "rung": int(row.get("rung", 0)),
            }
        )
    return stats, sets


def _encoded(prm: Mapping[str, Any]) -> dict[str, str]:
    """A hyperparameter set as the store holds it (`prm.value` JSON text per name)."""
    return {name: encode_value(value) for name, value in prm.items()}


def _shown(encoded: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(name)}: {encoded[name]}" for name in sorted(encoded)) + "}"


def _uid_clash(uid: str, stored: Mapping[str, str], given: Mapping[str, str], where: str | None) -> str:
    """The error for a uid given with other values than it names (both sets as stored JSON)."""
    return (
        f"{where + ': ' if where else ''}hyperparameter uid {uid} already names the set "
        f"{_shown(stored)}, not {_shown(given)}; "
        "a uid stands for one set of values (give this set its own uid, or none: nnsearch then uses the md5 "
        "of the values); nothing was written"
    )


def _check_stored_sets(executor: Executor, sets: Mapping[str, Mapping[str, Any]], where: Mapping[str, str]) -> None:
    """Refuse a uid whose stored hyperparameter set differs from the one given (`where`: uid -> its source)."""
    uids = sorted(sets)
    stored: dict[str, dict[str, str]] = {}
    for start in range(0, len(uids), _CHUNK):
        for uid, name, value in executor.execute(
            select(Prm.uid, Prm.name, Prm.value).where(Prm.uid.in_(uids[start : start + _CHUNK]))
        ):
            stored.setdefault(uid, {})[name] = value
    for uid, values in stored.items():
        if values != _encoded(sets[uid]):
            raise StoreError(_uid_clash(uid, values, _encoded(sets[uid]), where.get(uid)))


def _check_limits(bundle: Bundle, stats: list[dict[str, Any]], sets: Mapping[str, Mapping[str, Any]]) -> None:
    """Every value fits its column on every engine (`nnsearch.store.limits.check_row`)."""
    for row in stats:
        where = row.get("source") or f"stat of model {row.get('nn')!r}"
        check_row(Stat.__table__, row, where)
        for name in sets.get(row["prm"], {}):
            check_row(Prm.__table__, {"name": name}, where)
    for uid, prm in sets.items():
        check_row(PrmSet.__table__, {"uid": uid}, "hyperparameter set")
        for name in prm:
            check_row(Prm.__table__, {"name": name}, f"hyperparameter set {uid}")
    for model, codes in ((NN, bundle.nn_code), (Metric, bundle.metric_code), (Transform, bundle.transform_code)):
        for name in codes:
            check_row(model.__table__, {"name": name}, f"{model.__tablename__} name")
    for name, values in bundle.nn_stats.items():
        check_row(NNStat.__table__, values, f"model {name!r}")
    for latency in bundle.latencies:
        check_row(LatencyRun.__table__, latency, f"latency of model {latency.get('nn')!r}")


def _write_train_stats(executor: Executor, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    ids: dict[tuple, int] = {}
    uids = sorted({row["prm"] for row in rows})
    columns = [getattr(Stat, c) for c in STAT_KEY]
    for start in range(0, len(uids), _CHUNK):
        found = executor.execute(select(Stat.id, *columns).where(Stat.prm.in_(uids[start : start + _CHUNK])))
        ids.update({tuple(r[1:]): r[0] for r in found})
    insert_ignore(
        executor,
        TrainStat,
        [
            {
                "stat_id": ids[tuple(row[c] for c in STAT_KEY)],
                **{f: finite_or_none(row["train"].get(f)) for f in TRAIN_FIELDS},
            }
            for row in rows
        ],
    )


def model_bundle(rec: ModelRecord) -> Bundle:
    """The rows of one `ModelRecord` (without weights and trial link)."""
    prm = dict(rec.prm)
    stats: list[dict[str, Any]] = []
    for ep in rec.epochs:
        key = dict(
            task=rec.task,
            dataset=rec.dataset,
            nn=rec.nn,
            transform=rec.transform,
            epoch=ep.epoch,
            prm=prm,
            rung=rec.rung,
        )
        train = {f: getattr(ep, f) for f in TRAIN_FIELDS}
        stats.append({**key, "metric": "psnr", "accuracy": ep.psnr, "duration": ep.duration_ns, "train": train})
        stats.append({**key, "metric": "ssim", "accuracy": ep.ssim, "duration": ep.duration_ns})
    last = rec.epochs[-1].epoch if rec.epochs else 0
    metric_code = dict(METRIC_CODE)
    for q in rec.precisions:
        key = dict(
            task=rec.task, dataset=rec.dataset, nn=rec.nn, transform=rec.transform, epoch=last, prm=prm, rung=rec.rung
        )
        for metric, value in (("psnr", q.psnr), ("ssim", q.ssim)):
            name = Precision.parse(q.precision).metric(metric)
            metric_code[name] = precision_metric_code(metric, q.precision)
            stats.append({**key, "metric": name, "accuracy": value, "duration": q.duration_ns})
    now = utcnow()
    return Bundle(
        stats=stats,
        nn_code={rec.nn: rec.code},
        nn_arch={rec.nn: rec.arch_json},
        metric_code=metric_code,
        transform_code={rec.transform: rec.transform_code},
        nn_stats={
            rec.nn: {
                "params": rec.params,
                "macs": rec.macs,
                "macs_height": rec.macs_hw[0],
                "macs_width": rec.macs_hw[1],
                "depth": rec.depth,
                "model_size_bytes": rec.model_size_bytes,
            }
        },
        latencies=[
            {**dataclasses.asdict(lat), "nn": rec.nn, "created_at": lat.created_at or now} for lat in rec.latencies
        ],
        prm_sets={prm_uid(prm): prm},
    )


def write_model(session: Executor, rec: ModelRecord) -> str:
    """Write a `ModelRecord` inside an open transaction; returns its prm uid."""
    uid = prm_uid(rec.prm)
    write_bundle(session, model_bundle(rec))
    if rec.weights is not None:
        insert_ignore(
            session,
            Weights,
            [
                {
                    "nn": rec.nn,
                    "prm": uid,
                    "state": rec.weights,
                    "sha256": hashlib.sha256(rec.weights).hexdigest(),
                    "created_at": utcnow(),
                }
            ],
        )
    return uid


def record_trial(store: Store, study: str, trial_number: int, rec: ModelRecord, state: str = "complete") -> str:
    """Record one trial's model (at its rung, `rec.rung`) and link it to its Optuna trial, all or nothing."""

    def work(session: Session) -> str:
        uid = write_model(session, rec)
        upsert(
            session,
            TrialLink,
            [
                {
                    "study": study,
                    "trial_number": trial_number,
                    "rung": rec.rung,
                    "nn": rec.nn,
                    "prm": uid,
                    "task": rec.task,
                    "dataset": rec.dataset,
                    "state": state,
                    "created_at": utcnow(),
                }
            ],
        )
        return uid

    return store.write(work)


def record_stats_bulk(
    store: Store,
    stats: Iterable[Mapping[str, Any]],
    *,
    nn_code: Mapping[str, str] | None = None,
    metric_code: Mapping[str, str] | None = None,
    transform_code: Mapping[str, str] | None = None,
) -> int:
    """Write many stat rows (see `Bundle` for their keys) and their hyperparameter sets at once.

    The code maps add the `nn`/`metric`/`transform` rows the stats name; a name
    that is neither given nor already stored fails the whole write (foreign
    key). Returns the number of stat rows that were new.
    """
    bundle = Bundle(
        stats=cast("list[dict[str, Any]]", list(stats)),
        nn_code=nn_code or {},
        metric_code=metric_code or {},
        transform_code=transform_code or {},
    )
    return record_bundle(store, bundle)


def record_bundle(store: Store, bundle: Bundle) -> int:
    """Write a `Bundle` in one transaction; returns the number of stat rows that were new."""

    def work(session: Session) -> int:
        before = session.scalar(select(func.count()).select_from(Stat))
        write_bundle(session, bundle)
        return (session.scalar(select(func.count()).select_from(Stat)) or 0) - (before or 0)

    return store.write(work)
