"""Reading a study's results back as pandas DataFrames, in full or incrementally.

`StudyReader` keeps what it has read and, on each `refresh`, reads only the
trials it has not seen: those numbered above the highest seen, plus the few
lower numbers that had no record yet (trials still running, or lost), plus the
higher multi-fidelity rungs of trials that were continued since. A trial's rows
at one rung are written once, all together (`nnsearch.store.record.record_trial`),
so what was read stays true; the per-trial readers of a running study (early
stopping, live status, the repeat check) therefore read O(new trials) rows per
trial instead of the whole study. A latency recorded for a student after its
trial was read (`nnsearch profile`) shows in a new reader, e.g. `study_results`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Any

import pandas as pd
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from nnsearch.common.precision import Precision
from nnsearch.store.engine import Store
from nnsearch.store.schema import NNStat, Stat, TrialLink
from nnsearch.store.timings import LatencyQuery, StudentLatency, student_latencies, study_configuration

#: Columns of `study_results`, in order.
RESULT_COLUMNS = [
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
#: Columns of `StudyReader.rung_results`: one row per trial and rung, with the rung's hyperparameter set (uid).
RUNG_COLUMNS = RESULT_COLUMNS + ["prm"]
EPOCH_COLUMNS = ["trial", "rung", "nn", "state", "metric", "epoch", "value"]
_RESULT_TYPES = {
    "trial": "int64",
    "rung": "int64",
    "psnr": "float64",
    "ssim": "float64",
    "latency_ms": "float64",
    "measured_ms": "float64",
    "predicted_ms": "float64",
    "params": "Int64",
    "macs": "float64",
}
_EPOCH_TYPES = {"trial": "int64", "rung": "int64", "epoch": "int64", "value": "float64"}
NAN = float("nan")
_CHUNK = 2000


class StudyReader:
    """One study's results, read incrementally (see the module docstring); latency by `query`."""

    def __init__(self, store: Store, study: str, query: LatencyQuery) -> None:
        self.store, self.study, self.query = store, study, query
        self._seen: set[tuple[int, int]] = set()  # (trial, rung) links read
        self._rungs = _frame([], RUNG_COLUMNS, _RESULT_TYPES)
        self._results = _frame([], RESULT_COLUMNS, _RESULT_TYPES)
        self._epochs = _frame([], EPOCH_COLUMNS, _EPOCH_TYPES)

    def refresh(self) -> int:
        """Read the trials (and higher rungs of trials) recorded since the last refresh; returns how many were new."""
        results, epochs = self.store.reading(self._read_new)
        if results:
            self._seen.update((row["trial"], row["rung"]) for row in results)
            self._rungs = _append(self._rungs, _frame(results, RUNG_COLUMNS, _RESULT_TYPES), ["trial", "rung"])
            self._epochs = _append(
                self._epochs, _frame(epochs, EPOCH_COLUMNS, _EPOCH_TYPES), ["trial", "rung", "metric", "epoch"]
            )
            highest = self._rungs.drop_duplicates("trial", keep="last")  # sorted by trial, rung
            self._results = highest[RESULT_COLUMNS].reset_index(drop=True)
        return len(results)

    def results(self) -> pd.DataFrame:
        """One row per recorded trial at the highest rung it reached (`RESULT_COLUMNS`); do not modify it."""
        self.refresh()
        return self._results

    def rung_results(self) -> pd.DataFrame:
        """One row per recorded trial and rung it reached (`RUNG_COLUMNS`, sorted by trial, rung); do not modify it."""
        self.refresh()
        return self._rungs

    def epochs(self, metric: str = "psnr", state: str = "complete") -> pd.DataFrame:
        """Per-epoch values of `metric` of the trials in `state`: trial, nn, rung, epoch, value (after a refresh).

        A multi-fidelity student's later rungs continue its epoch numbers (rung 1 follows rung 0's last epoch).
        """
        self.refresh()
        rows = self._epochs[(self._epochs["metric"] == metric) & (self._epochs["state"] == state)]
        return rows[["trial", "nn", "rung", "epoch", "value"]].reset_index(drop=True)

    def _unseen_filter(self, conn: Connection):  # -> ColumnElement[bool] | None
        trials = {trial for trial, rung in self._seen if rung == 0}
        if not trials:
            return None
        top = max(trials)
        gaps = sorted(set(range(top)) - trials)  # running or lost trials below the newest seen
        unseen = [TrialLink.trial_number > top]
        if gaps:
            unseen.append(TrialLink.trial_number.in_(gaps))
        higher = conn.execute(
            select(TrialLink.trial_number, TrialLink.rung).where(TrialLink.study == self.study, TrialLink.rung > 0)
        ).all()
        unseen += [
            and_(TrialLink.trial_number == trial, TrialLink.rung == rung)
            for trial, rung in higher
            if (trial, rung) not in self._seen
        ]
        return or_(*unseen)

    def _read_new(self, conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        where = [TrialLink.study == self.study]
        unseen = self._unseen_filter(conn)
        if unseen is not None:
            where.append(unseen)
        links = conn.execute(
            select(
                TrialLink.trial_number, TrialLink.rung, TrialLink.nn, TrialLink.prm, TrialLink.state, TrialLink.dataset
            ).where(*where)
        ).all()
        if not links:
            return [], []
        names = sorted({link.nn for link in links})
        stats: dict[tuple[str, str, str], list[tuple[str, int, float]]] = defaultdict(list)
        for nn, prm, dataset, metric, epoch, accuracy in _stats(conn, names):
            stats[(nn, prm, dataset)].append((metric, int(epoch), float(accuracy)))
        sizes = {
            nn: (params, macs)
            for nn, params, macs in _in_chunks(conn, NNStat.nn, (NNStat.nn, NNStat.params, NNStat.macs), names)
        }
        found = student_latencies(conn, names, self.query)
        results, epochs = [], []
        for trial, rung, nn, prm, state, dataset in links:
            rows = stats.get((nn, prm, dataset), [])
            last = max((epoch for _, epoch, _ in rows), default=None)
            final = {metric: value for metric, epoch, value in rows if epoch == last}
            psnr, ssim = (final.get(Precision.parse(self.query.precision).metric(m), NAN) for m in ("psnr", "ssim"))
            measured, predicted = _ms(found.get(nn), "measured"), _ms(found.get(nn), "predicted")
            params, macs = sizes.get(nn, (None, None))
            results.append(
                {
                    "trial": int(trial),
                    "rung": int(rung),
                    "nn": nn,
                    "state": state,
                    "dataset": dataset,
                    "psnr": psnr,
                    "ssim": ssim,
                    "latency_ms": predicted if math.isnan(measured) else measured,
                    "measured_ms": measured,
                    "predicted_ms": predicted,
                    "params": params,
                    "macs": NAN if macs is None else macs,
                    "prm": prm,
                }
            )
            epochs += [
                {
                    "trial": int(trial),
                    "rung": int(rung),
                    "nn": nn,
                    "state": state,
                    "metric": metric,
                    "epoch": epoch,
                    "value": value,
                }
                for metric, epoch, value in rows
            ]
        return results, epochs


def study_results(
    store: Store,
    study: str,
    device: str = "host-cpu",
    *,
    latency: LatencyQuery | None = None,
    precision: str | None = None,
) -> pd.DataFrame:
    """One row per recorded trial of `study`: final-epoch PSNR/SSIM, latency, size (`RESULT_COLUMNS`).

    A multi-fidelity student shows at the highest rung it reached (column `rung`).

    Latency follows `nnsearch.store.timings`: at `latency`'s configuration, by
    default the study's own (`study_configuration` on `device`); `latency_ms` is
    the measured figure where one exists, else the prediction (`measured_ms` and
    `predicted_ms` hold both). With a precision other than fp32 (`precision`, else
    `latency.precision`), `psnr`, `ssim` and the latencies are those of that
    precision's quantized model (stat metrics 'psnr@P', 'ssim@P').
    """
    query = latency or study_configuration(store, study, device, precision or Precision.FP32)
    if precision is not None and query.precision != precision:
        query = dataclasses.replace(query, precision=precision)
    return StudyReader(store, study, query).results()


def epoch_metric(store: Store, study: str, metric: str = "psnr", state: str = "complete") -> pd.DataFrame:
    """Per-epoch values of `metric` for the trials of `study` in `state`: trial, nn, rung, epoch, value."""
    return StudyReader(store, study, LatencyQuery()).epochs(metric, state)


def _in_chunks(conn: Connection, key: Any, columns: tuple[Any, ...], names: list[str]) -> list[Any]:
    """Rows of `columns` whose `key` is one of `names` (batched IN queries)."""
    rows: list[Any] = []
    for start in range(0, len(names), _CHUNK):
        rows += conn.execute(select(*columns).where(key.in_(names[start : start + _CHUNK]))).all()
    return rows


def _stats(conn: Connection, names: list[str]) -> list[Any]:
    """Stat rows (nn, prm, dataset, metric, epoch, accuracy) of the models named."""
    return _in_chunks(conn, Stat.nn, (Stat.nn, Stat.prm, Stat.dataset, Stat.metric, Stat.epoch, Stat.accuracy), names)


def _frame(rows: list[dict[str, Any]], columns: list[str], types: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns).astype(types)


def _append(old: pd.DataFrame, new: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """`old` and `new` rows in `order` (new trials usually come last, so usually no sort is needed)."""
    new = new.sort_values(order, kind="stable")
    if old.empty:
        return new.reset_index(drop=True)
    both = pd.concat([old, new], ignore_index=True)
    if new.empty or new["trial"].min() > old["trial"].iloc[-1]:
        return both
    return both.sort_values(order, kind="stable").reset_index(drop=True)


def _ms(found: StudentLatency | None, kind: str) -> float:
    stat = None if found is None else getattr(found, kind)
    return NAN if stat is None else stat.ms
