"""Writing results: models, hyperparameters, stats, latency and weights, each write all-or-nothing.

Everything goes through `write_bundle`, which inserts rows with dialect-aware
bulk "insert or ignore" statements (Core `insert` + executemany), so writing the
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import Table, UniqueConstraint, bindparam, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from nnsearch.common.precision import Precision
from nnsearch.errors import StoreError
from nnsearch.store.engine import Store
from nnsearch.store.limits import check_row, finite_or_none
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
from nnsearch.store.stat import LatencyStat

TASK = "img-denoising"

#: Code stored in the `metric` table for the metrics nnsearch records.
METRIC_CODE = {
    "psnr": "# PSNR on float images in [0, 1], no rounding: 10*log10(1/MSE); see nnsearch.train.metrics.psnr\n",
    "ssim": "# SSIM, 11x11 Gaussian window sigma 1.5, per channel, K1=0.01 K2=0.03; see nnsearch.train.metrics.ssim\n",
}


def precision_metric_code(metric: str, precision: str) -> str:
    """The `metric` table code of `Precision.parse(precision).metric(metric)`."""
    return (METRIC_CODE[metric].rstrip("\n") + f"; computed on the output of the {precision} .tflite file in "
            "ai-edge-litert (full resolution, tiled); see nnsearch.export.quantized\n")


#: Columns that identify a stat row (its unique key).
STAT_KEY = ("task", "dataset", "metric", "nn", "epoch", "transform", "prm", "run")
#: Optional training diagnostics of a stat row (the `train_stat` table).
TRAIN_FIELDS = ("train_loss", "val_loss", "grad_norm", "samples_per_s", "cpu_mem_mb", "gpu_mem_mb")
NN_STAT_FIELDS = ("params", "macs", "macs_height", "macs_width", "depth", "model_size_bytes")
_CHUNK = 500

Executor = Session | Connection


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def prm_uid(prm: Mapping[str, Any]) -> str:
    """md5 of the hyperparameter dict's canonical JSON (the NN Dataset's uid)."""
    return md5(json.dumps(dict(prm), sort_keys=True, default=str))


def encode_value(value: Any) -> str:
    """A hyperparameter value as stored in `prm.value` (JSON text)."""
    return json.dumps(value, sort_keys=True, default=str)


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


@dataclass(frozen=True)
class LatencyRecord(LatencyStat):
    """A latency figure (a `LatencyStat`) of a whole model on one device profile: a `latency_run` row."""

    device: str
    runtime: str
    runtime_version: str
    threads: int
    height: int
    width: int
    kind: str  # "measured" or "predicted"
    precision: str = Precision.FP32  # of the timed model: fp32, fp16, w8a16 or int8
    created_at: datetime | None = None  # when measured; None: when recorded


@dataclass
class PrecisionRecord:
    """Full-resolution quality of a quantized variant after the last epoch (stat rows 'psnr@P', 'ssim@P')."""

    precision: str
    psnr: float
    ssim: float
    duration_ns: int = 0


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
    precisions: list[PrecisionRecord] = field(default_factory=list)


@dataclass
class Bundle:
    """Rows for one all-or-nothing write.

    `stats`: mappings with the `STAT_KEY` columns (`run` may be left out: 0),
    `accuracy` and `duration` (nanoseconds, or None when unknown), where `prm`
    is the hyperparameter dict; an optional `prm_uid` overrides the
    computed uid (imports keep the NN Dataset's own), and an optional `train`
    mapping of `TRAIN_FIELDS` adds a `train_stat` row. `prm_sets` (uid -> dict)
    adds hyperparameter sets that no stat names.
    The code maps (name -> source) add the `nn`, `metric` and `transform` rows the
    stats refer to; `nn_arch` (name -> Arch JSON), `nn_stats` (name -> the
    `NN_STAT_FIELDS`) and `latencies` (mappings of `latency_run` columns with
    `nn`) add model facts. Rows that already exist are kept as they are, except
    that a stored model with empty code or without an architecture gets the
    code or architecture the bundle gives.
    """

    stats: list[Mapping[str, Any]] = field(default_factory=list)
    nn_code: Mapping[str, str] = field(default_factory=dict)
    metric_code: Mapping[str, str] = field(default_factory=dict)
    transform_code: Mapping[str, str] = field(default_factory=dict)
    nn_arch: Mapping[str, str | None] = field(default_factory=dict)
    nn_stats: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    latencies: list[Mapping[str, Any]] = field(default_factory=list)
    prm_sets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def dialect_insert(executor: Executor, table: Table):  # -> Insert with on-conflict support
    """A dialect-specific INSERT for `table` (SQLite, PostgreSQL or MySQL/MariaDB)."""
    name = _dialect(executor)
    module = {"sqlite": sqlite, "postgresql": postgresql, "mysql": mysql, "mariadb": mysql}.get(name)
    if module is None:
        raise StoreError(f"unsupported database dialect {name!r}")
    return module.insert(table)


def insert_ignore(executor: Executor, model: type, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows, keeping existing ones with the same primary or unique key (any engine).

    Rows are sent sorted by primary key so concurrent writers lock in one order.
    """
    rows = _sorted_rows(model.__table__, rows)
    if not rows:
        return
    stmt = dialect_insert(executor, model.__table__)
    if _dialect(executor) in ("mysql", "mariadb"):  # a no-op update: INSERT IGNORE would hide other errors
        first = next(iter(model.__table__.primary_key.columns))
        stmt = stmt.on_duplicate_key_update({first.name: first})
    else:
        stmt = stmt.on_conflict_do_nothing()
    executor.execute(stmt, rows)


def upsert(executor: Executor, model: type, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows, overwriting the non-key columns of existing rows with the same primary key."""
    table = model.__table__
    rows = _sorted_rows(table, rows)
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect_insert(executor, table)
    if _dialect(executor) in ("mysql", "mariadb"):
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in rows[0] if c not in keys})
    else:
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={c: stmt.excluded[c] for c in rows[0] if c not in keys})
    executor.execute(stmt, rows)


def _dialect(executor: Executor) -> str:
    return executor.get_bind().dialect.name if isinstance(executor, Session) else executor.dialect.name


def _sorted_rows(table: Table, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows in primary-key order, else in unique-key order (a primary key the database assigns)."""
    rows = list(rows)
    if not rows:
        return rows
    candidates = [[c.name for c in table.primary_key.columns]]
    candidates += [[c.name for c in con.columns] for con in table.constraints if isinstance(con, UniqueConstraint)]
    for keys in candidates:
        if all(k in rows[0] for k in keys):
            try:
                rows.sort(key=lambda r: tuple(r[k] for k in keys))
            except TypeError:  # mixed types in a key column: keep the given order
                pass
            break
    return rows


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
    insert_ignore(executor, Prm, [{"uid": uid, "name": k, "value": encode_value(v)}
                                  for uid, prm in sets.items() for k, v in prm.items()])
    insert_ignore(executor, NNStat, [{"nn": n, **{f: s[f] for f in NN_STAT_FIELDS}}
                                     for n, s in bundle.nn_stats.items()])
    insert_ignore(executor, Stat, [{c: row[c] for c in (*STAT_KEY, "accuracy", "duration")} for row in stats])
    _write_train_stats(executor, [row for row in stats if row.get("train") is not None])
    insert_ignore(executor, LatencyRun, bundle.latencies)
    return len(stats)


def _fill_model_gaps(executor: Executor, nn_rows: list[dict[str, Any]]) -> None:
    """Code and architecture learnt later fill a stored model's empty code / missing architecture."""
    table = NN.__table__  # Core statements, one executemany each, rows in name order (one lock order)
    nn_rows = sorted(nn_rows, key=lambda r: r["name"])
    codes = [{"b_name": r["name"], "b_code": r["code"], "b_id": r["id"]} for r in nn_rows if r["code"]]
    if codes:
        executor.execute(table.update().where(table.c.name == bindparam("b_name"), table.c.code == "")
                         .values(code=bindparam("b_code"), id=bindparam("b_id")), codes)
    archs = [{"b_name": r["name"], "b_arch": r["arch"]} for r in nn_rows if r["arch"]]
    if archs:
        executor.execute(table.update().where(table.c.name == bindparam("b_name"), table.c.arch.is_(None))
                         .values(arch=bindparam("b_arch")), archs)


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
        stats.append({**row, "prm": uid, "accuracy": float(row["accuracy"]),
                      "duration": None if duration is None else int(duration),
                      "epoch": int(row["epoch"]), "run": int(row.get("run", 0))})
    return stats, sets


def _encoded(prm: Mapping[str, Any]) -> dict[str, str]:
    """A hyperparameter set as the store holds it (`prm.value` JSON text per name)."""
    return {name: encode_value(value) for name, value in prm.items()}


def _shown(encoded: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{json.dumps(name)}: {encoded[name]}" for name in sorted(encoded)) + "}"


def _uid_clash(uid: str, stored: Mapping[str, str], given: Mapping[str, str], where: str | None) -> str:
    """The error for a uid given with other values than it names (both sets as stored JSON)."""
    return (f"{where + ': ' if where else ''}hyperparameter uid {uid} already names the set "
            f"{_shown(stored)}, not {_shown(given)}; "
            "a uid stands for one set of values (give this set its own uid, or none: nnsearch then uses the md5 "
            "of the values); nothing was written")


def _check_stored_sets(executor: Executor, sets: Mapping[str, Mapping[str, Any]],
                       where: Mapping[str, str]) -> None:
    """Refuse a uid whose stored hyperparameter set differs from the one given (`where`: uid -> its source)."""
    uids = sorted(sets)
    stored: dict[str, dict[str, str]] = {}
    for start in range(0, len(uids), _CHUNK):
        for uid, name, value in executor.execute(select(Prm.uid, Prm.name, Prm.value)
                                                 .where(Prm.uid.in_(uids[start:start + _CHUNK]))):
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
        found = executor.execute(select(Stat.id, *columns).where(Stat.prm.in_(uids[start:start + _CHUNK])))
        ids.update({tuple(r[1:]): r[0] for r in found})
    insert_ignore(executor, TrainStat, [
        {"stat_id": ids[tuple(row[c] for c in STAT_KEY)], **{f: finite_or_none(row["train"].get(f)) for f in TRAIN_FIELDS}}
        for row in rows
    ])


def model_bundle(rec: ModelRecord) -> Bundle:
    """The rows of one `ModelRecord` (without weights and trial link)."""
    prm = dict(rec.prm)
    stats = []
    for ep in rec.epochs:
        key = dict(task=rec.task, dataset=rec.dataset, nn=rec.nn, transform=rec.transform, epoch=ep.epoch, prm=prm)
        train = {f: getattr(ep, f) for f in TRAIN_FIELDS}
        stats.append({**key, "metric": "psnr", "accuracy": ep.psnr, "duration": ep.duration_ns, "train": train})
        stats.append({**key, "metric": "ssim", "accuracy": ep.ssim, "duration": ep.duration_ns})
    last = rec.epochs[-1].epoch if rec.epochs else 0
    metric_code = dict(METRIC_CODE)
    for q in rec.precisions:
        key = dict(task=rec.task, dataset=rec.dataset, nn=rec.nn, transform=rec.transform, epoch=last, prm=prm)
        for metric, value in (("psnr", q.psnr), ("ssim", q.ssim)):
            name = Precision.parse(q.precision).metric(metric)
            metric_code[name] = precision_metric_code(metric, q.precision)
            stats.append({**key, "metric": name, "accuracy": value, "duration": q.duration_ns})
    now = utcnow()
    return Bundle(
        stats=stats, nn_code={rec.nn: rec.code}, nn_arch={rec.nn: rec.arch_json},
        metric_code=metric_code, transform_code={rec.transform: rec.transform_code},
        nn_stats={rec.nn: {
            "params": rec.params, "macs": rec.macs, "macs_height": rec.macs_hw[0], "macs_width": rec.macs_hw[1],
            "depth": rec.depth, "model_size_bytes": rec.model_size_bytes,
        }},
        latencies=[{**dataclasses.asdict(lat), "nn": rec.nn, "created_at": lat.created_at or now} for lat in rec.latencies],
        prm_sets={prm_uid(prm): prm},
    )


def write_model(session: Executor, rec: ModelRecord) -> str:
    """Write a `ModelRecord` inside an open transaction; returns its prm uid."""
    uid = prm_uid(rec.prm)
    write_bundle(session, model_bundle(rec))
    if rec.weights is not None:
        insert_ignore(session, Weights, [{"nn": rec.nn, "prm": uid, "state": rec.weights,
                                          "sha256": hashlib.sha256(rec.weights).hexdigest(), "created_at": utcnow()}])
    return uid


def record_trial(store: Store, study: str, trial_number: int, rec: ModelRecord, state: str = "complete") -> str:
    """Record one trial's model and link it to its Optuna trial, all or nothing."""

    def work(session: Session) -> str:
        uid = write_model(session, rec)
        upsert(session, TrialLink, [{
            "study": study, "trial_number": trial_number, "nn": rec.nn, "prm": uid,
            "task": rec.task, "dataset": rec.dataset, "state": state, "created_at": utcnow(),
        }])
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
    bundle = Bundle(stats=list(stats), nn_code=nn_code or {}, metric_code=metric_code or {},
                    transform_code=transform_code or {})
    return record_bundle(store, bundle)


def record_bundle(store: Store, bundle: Bundle) -> int:
    """Write a `Bundle` in one transaction; returns the number of stat rows that were new."""
    def work(session: Session) -> int:
        before = session.scalar(select(func.count()).select_from(Stat))
        write_bundle(session, bundle)
        return session.scalar(select(func.count()).select_from(Stat)) - before

    return store.write(work)

