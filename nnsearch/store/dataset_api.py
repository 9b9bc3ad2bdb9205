"""`data()` and `run_data()`: the store as pandas DataFrames, in the NN Dataset's shape.

`data()` returns the NN Dataset's columns (`task, dataset, metric, metric_code,
nn, nn_code, epoch, accuracy, duration, prm, transform_code`) and then ours:
`transform` (its name), `prm_uid`, `run` (repeat index of a training with the
same hyperparameters, 0 for the first), `rung` (the multi-fidelity rung the row
belongs to, 0 for the first and for single-fidelity trainings), `params`, `macs` and one `latency_ms@<device>`
column per device profile. A latency column holds, per model, its latency on
that device by the one rule of `nnsearch.store.timings` (measured before
predicted, the minimum over runs; at one study's configuration when `study`
names one study, else at the model's largest recorded input and fewest
threads); `run_data()` returns every latency record. `device` selects which
device columns appear; it never drops rows; `precision` picks which precisions
get columns (default: every recorded one; fp32 columns carry no suffix).

Precision. Quality of a quantized variant is a stat row with the metric name
`<metric>@<precision>` (`psnr@int8`, `ssim@w8a16`, `psnr@fp16`; plain `psnr` is
fp32), so `data(metric="psnr@int8")` selects it. Latency of a quantized model
goes in a column `latency_ms@<device>@<precision>` (e.g.
`latency_ms@host-cpu@int8`); `run_data()` has a `precision` column and filter.

Filters combine with AND; a list, tuple or set means "any of". Reading is one
query for the stat rows plus one batched query per side table (codes,
hyperparameters, sizes, latency) for the names that occur, so a code text is
read once however many rows share it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.engine import Connection

from nnsearch.common.precision import Precision
from nnsearch.store.engine import Store, open_store
from nnsearch.store.hashing import encode_value
from nnsearch.store.schema import NN, LatencyRun, Metric, NNStat, Prm, Stat, Transform, TrialLink
from nnsearch.store.timings import LatencyQuery, student_latencies, study_configuration

#: The NN Dataset's `data()` columns, in its order.
NND_COLUMNS = (
    "task",
    "dataset",
    "metric",
    "metric_code",
    "nn",
    "nn_code",
    "epoch",
    "accuracy",
    "duration",
    "prm",
    "transform_code",
)
#: Columns nnsearch adds (then one `latency_ms@<device>` per device).
EXTRA_COLUMNS = ("transform", "prm_uid", "run", "rung", "params", "macs")
LATENCY_PREFIX = "latency_ms@"
RUN_COLUMNS = (
    "nn",
    "device",
    "runtime",
    "runtime_version",
    "precision",
    "threads",
    "height",
    "width",
    "kind",
    "median_ms",
    "min_ms",
    "max_ms",
    "runs",
    "created_at",
)
_CHUNK = 2000
_STAT_COLUMNS = ("task", "dataset", "metric", "nn", "epoch", "accuracy", "duration", "prm", "transform", "run", "rung")

Filter = Any  # a value, or a list/tuple/set of values meaning "any of"


def data(
    task: Filter = None,
    dataset: Filter = None,
    metric: Filter = None,
    nn: Filter = None,
    epoch: Filter = None,
    only_best_accuracy: bool = False,
    max_rows: int | None = None,
    db: Store | str | None = None,
    prm: Mapping[str, Any] | Filter = None,
    study: Filter = None,
    device: Filter = None,
    precision: Filter = None,
    rung: Filter = None,
) -> pd.DataFrame:
    """Stat rows with their model, metric and transform code, hyperparameters, size and latency.

    `prm`: a hyperparameter-set uid (or several), or a mapping name -> value (or
    values), matched on the stored JSON text (so 1 and 1.0 differ). `study`: rows
    of the models (nn and hyperparameters) that study's trials produced. `rung`: rows of
    these multi-fidelity rungs only.
    `only_best_accuracy`: per (task, dataset, metric, nn, epoch) only the rows
    with the highest accuracy. Rows are ordered by task, dataset, metric, nn,
    epoch; `max_rows` caps their number. `db`: a Store, URL or SQLite path.
    Rows of one hyperparameter set share one `prm` dict object: copy before changing it.
    """
    where = _stat_filters(task, dataset, metric, nn, epoch, prm, study)
    rung_filter = _match(Stat.rung, rung)
    if rung_filter is not None:
        where.append(rung_filter)
    with open_store(db) as store:
        studies = _as_set(study)
        single = next(iter(studies)) if len(studies) == 1 else None
        return store.reading(
            lambda conn: _read_stats(conn, _stat_query(where, only_best_accuracy, max_rows), device, precision, single)
        )


def _read_stats(conn: Connection, query: Any, device: Filter, precision: Filter, study: str | None) -> pd.DataFrame:
    """The rows of `query` with codes, hyperparameters, sizes and latency columns added."""
    rows = _tuples(conn, query)
    frame = pd.DataFrame.from_records(rows, columns=list(_STAT_COLUMNS))
    frame = frame.rename(columns={"prm": "prm_uid"}).astype(
        {"epoch": "int64", "duration": "Int64", "accuracy": "float64", "run": "int64", "rung": "int64"}
    )
    keys = {column: _Keys(frame[column]) for column in ("metric", "nn", "transform", "prm_uid")}
    for model, column in ((Metric, "metric"), (NN, "nn"), (Transform, "transform")):
        codes = dict(_fetch_by(conn, model.name, (model.name, model.code), keys[column].distinct))
        frame[f"{column}_code"] = keys[column].lookup(codes)
    frame["prm"] = keys["prm_uid"].lookup(_prm_dicts(conn, keys["prm_uid"].distinct), default={})
    sizes = _fetch_by(conn, NNStat.nn, (NNStat.nn, NNStat.params, NNStat.macs), keys["nn"].distinct)
    frame["params"] = keys["nn"].lookup({n: p for n, p, _ in sizes}, dtype="Int64")
    frame["macs"] = keys["nn"].lookup({n: m for n, _, m in sizes}, default=np.nan, dtype="float64")
    frame = frame[list(NND_COLUMNS + EXTRA_COLUMNS)]
    for column, values in _latency_columns(conn, keys["nn"].distinct, device, precision, study).items():
        frame[column] = keys["nn"].lookup(values, default=np.nan, dtype="float64")
    return frame


def run_data(
    nn: Filter = None,
    device: Filter = None,
    db: Store | str | None = None,
    kind: Filter = None,
    runtime: Filter = None,
    max_rows: int | None = None,
    precision: Filter = None,
) -> pd.DataFrame:
    """Every latency record (`latency_run`), ordered by nn, device and time (`precision`: fp32, int8, ...)."""
    where = [
        c
        for c in (
            _match(LatencyRun.nn, nn),
            _match(LatencyRun.device, device),
            _match(LatencyRun.kind, kind),
            _match(LatencyRun.runtime, runtime),
            _match(LatencyRun.precision, precision),
        )
        if c is not None
    ]
    query = (
        select(*(getattr(LatencyRun, c) for c in RUN_COLUMNS))
        .where(*where)
        .order_by(LatencyRun.nn, LatencyRun.device, LatencyRun.created_at, LatencyRun.id)
        .limit(max_rows)
    )
    with open_store(db) as store:
        rows = store.reading(lambda conn: conn.execute(query).all())
    return pd.DataFrame.from_records(rows, columns=list(RUN_COLUMNS))


def _match(column: Any, value: Filter) -> ColumnElement[bool] | None:
    """`column = value`, or `column IN values` for a list/tuple/set; None when unfiltered."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return column.in_(list(value))
    return column == value


def _stat_filters(
    task: Filter,
    dataset: Filter,
    metric: Filter,
    nn: Filter,
    epoch: Filter,
    prm: Mapping[str, Any] | Filter,
    study: Filter,
) -> list[ColumnElement[bool]]:
    where = [
        _match(Stat.task, task),
        _match(Stat.dataset, dataset),
        _match(Stat.metric, metric),
        _match(Stat.nn, nn),
        _match(Stat.epoch, epoch),
    ]
    if isinstance(prm, Mapping):
        for name, value in prm.items():
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            where.append(
                exists().where(Prm.uid == Stat.prm, Prm.name == name, Prm.value.in_([encode_value(v) for v in values]))
            )
    else:
        where.append(_match(Stat.prm, prm))
    in_study = _match(TrialLink.study, study)
    if in_study is not None:
        where.append(
            exists().where(
                TrialLink.nn == Stat.nn,
                TrialLink.prm == Stat.prm,
                TrialLink.task == Stat.task,
                TrialLink.dataset == Stat.dataset,
                in_study,
            )
        )
    return [w for w in where if w is not None]


def _stat_query(where: list[ColumnElement[bool]], only_best: bool, max_rows: int | None):  # -> Select
    group = (Stat.task, Stat.dataset, Stat.metric, Stat.nn, Stat.epoch)
    query = select(*(getattr(Stat, c) for c in _STAT_COLUMNS)).where(*where)
    if only_best:
        best = select(*group, func.max(Stat.accuracy).label("best")).where(*where).group_by(*group).subquery()
        query = query.join(best, and_(*(best.c[c.key] == c for c in group), best.c.best == Stat.accuracy))
    return query.order_by(*group, Stat.transform, Stat.prm, Stat.run, Stat.rung).limit(
        max_rows
    )  # the order of uq_stat_key


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def _fetch_by(conn: Connection, key: Any, columns: Iterable[Any], values: Iterable[Any], *where: Any) -> list[Any]:
    """Rows of `columns` whose `key` is one of `values` (batched IN queries)."""
    rows: list[Any] = []
    for chunk in _chunks(sorted(set(values))):
        rows.extend(_tuples(conn, select(*columns).where(key.in_(chunk), *where)))
    return rows


def _tuples(conn: Connection, query: Any) -> list[tuple]:
    """All rows as the driver's plain tuples (only for str/int/float columns: no type processing)."""
    result = conn.execute(query)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


class _Keys:
    """A key column factorised once: its distinct values, and per-row lookups of facts about them."""

    def __init__(self, values: pd.Series) -> None:
        self.codes, uniques = pd.factorize(values)
        self.distinct: list[Any] = uniques.tolist()

    def lookup(self, facts: Mapping[Any, Any], default: Any = None, dtype: str = "object") -> Any:
        """An array with `facts[key]` for each row's key (`default` when absent)."""
        values = [facts.get(key, default) for key in self.distinct]
        if dtype == "object":
            table = np.fromiter(values, dtype=object, count=len(values))
        else:
            table = pd.array(values, dtype=dtype)
        return table.take(self.codes)


def _prm_dicts(conn: Connection, uids: list[str]) -> dict[str, dict[str, Any]]:
    """uid -> hyperparameter dict (JSON-decoded values); rows of one uid share that dict."""
    by_uid: dict[str, dict[str, Any]] = defaultdict(dict)
    decoded: dict[str, Any] = {}
    for uid, name, value in _fetch_by(conn, Prm.uid, (Prm.uid, Prm.name, Prm.value), uids):
        if value not in decoded:
            decoded[value] = json.loads(value)
        by_uid[uid][name] = decoded[value]
    return by_uid


def _latency_columns(
    conn: Connection, names: list[str], device: Filter, precision: Filter, study: str | None
) -> dict[str, dict[str, float]]:
    """`latency_ms@<device>[@<precision>]` -> {nn: ms} by `nnsearch.store.timings` (at `study`'s configuration if given).

    fp32 columns are named `latency_ms@<device>`, others `latency_ms@<device>@<precision>`;
    `precision` (None: every recorded one) selects which precisions get columns.
    """
    where = [c for c in (_match(LatencyRun.device, device), _match(LatencyRun.precision, precision)) if c is not None]
    recorded = set(_fetch_by(conn, LatencyRun.nn, (LatencyRun.device, LatencyRun.precision), names, *where))
    wanted = _as_set(precision) or {Precision.FP32}
    recorded |= {(dev, prec) for dev in _as_set(device) for prec in wanted}
    columns: dict[str, dict[str, float]] = {}
    for dev, prec in sorted(recorded):
        query = study_configuration(conn, study, dev, prec) if study is not None else LatencyQuery(dev, precision=prec)
        name = f"{LATENCY_PREFIX}{dev}{Precision.parse(prec).tag}"
        columns[name] = {nn: found.ms for nn, found in student_latencies(conn, names, query).items()}
    return columns


def _as_set(value: Filter) -> set[str]:
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple, set, frozenset)) else {value}
