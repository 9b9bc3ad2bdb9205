"""Reading a study's results back as pandas DataFrames, in full or incrementally.

`StudyReader` keeps what it has read and, on each `refresh`, reads only the
trials it has not seen: those numbered above the highest seen, plus the few
lower numbers that had no record yet (trials still running, or lost). A trial's
rows are written once, all together (`nnsearch.store.record.record_trial`), so
what was read stays true; the per-trial readers of a running study (early
stopping, live status, the repeat check) therefore read O(new trials) rows per
trial instead of the whole study. A latency recorded for a student after its
trial was read (`nnsearch profile`) shows in a new reader, e.g. `study_results`.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from nnsearch.store.engine import Store
from nnsearch.store.latency import LatencyQuery, student_latencies, study_configuration
from nnsearch.store.schema import NNStat, Stat, TrialLink

#: Columns of `study_results`, in order.
RESULT_COLUMNS = ["trial", "nn", "state", "dataset", "psnr", "ssim", "latency_ms", "measured_ms", "predicted_ms",
                  "params", "macs"]
EPOCH_COLUMNS = ["trial", "nn", "state", "metric", "epoch", "value"]
_MODEL = ["nn", "prm", "dataset"]
_CHUNK = 2000


class StudyReader:
    """One study's results, read incrementally (see the module docstring); latency by `query`."""

    def __init__(self, store: Store, study: str, query: LatencyQuery) -> None:
        self.store, self.study, self.query = store, study, query
        self._seen: set[int] = set()
        self._results = pd.DataFrame(columns=RESULT_COLUMNS)
        self._epochs = pd.DataFrame(columns=EPOCH_COLUMNS)

    def refresh(self) -> int:
        """Read the trials recorded since the last refresh; returns how many were new."""
        new_results, new_epochs = self.store.reading(self._read_new)
        if new_results.empty:
            return 0
        self._seen.update(int(n) for n in new_results["trial"])
        self._results = _concat(self._results, new_results).sort_values("trial", kind="stable").reset_index(drop=True)
        self._epochs = _concat(self._epochs, new_epochs).sort_values(["trial", "metric", "epoch"], kind="stable")
        self._epochs = self._epochs.reset_index(drop=True)
        return len(new_results)

    def results(self) -> pd.DataFrame:
        """One row per recorded trial (`RESULT_COLUMNS`), after a refresh; do not modify it."""
        self.refresh()
        return self._results

    def epochs(self, metric: str = "psnr", state: str = "complete") -> pd.DataFrame:
        """Per-epoch values of `metric` of the trials in `state`: trial, nn, epoch, value (after a refresh)."""
        self.refresh()
        rows = self._epochs[(self._epochs["metric"] == metric) & (self._epochs["state"] == state)]
        return rows[["trial", "nn", "epoch", "value"]].reset_index(drop=True)

    def _unseen_filter(self):  # -> ColumnElement[bool] | None
        if not self._seen:
            return None
        top = max(self._seen)
        gaps = sorted(set(range(top)) - self._seen)  # running or lost trials below the newest seen
        newer = TrialLink.trial_number > top
        return or_(newer, TrialLink.trial_number.in_(gaps)) if gaps else newer

    def _read_new(self, conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
        where = [TrialLink.study == self.study]
        unseen = self._unseen_filter()
        if unseen is not None:
            where.append(unseen)
        links = pd.DataFrame(conn.execute(
            select(TrialLink.trial_number.label("trial"), TrialLink.nn, TrialLink.prm, TrialLink.state,
                   TrialLink.dataset).where(*where)).all(), columns=["trial", "nn", "prm", "state", "dataset"])
        if links.empty:
            return links, links
        names = sorted(set(links["nn"]))
        stats = _stats(conn, names).merge(links, on=_MODEL)
        epochs = stats.rename(columns={"accuracy": "value"})[EPOCH_COLUMNS]
        return _result_rows(conn, links, stats, names, self.query), epochs


def study_results(store: Store, study: str, device: str = "host-cpu", *,
                  latency: LatencyQuery | None = None) -> pd.DataFrame:
    """One row per recorded trial of `study`: final-epoch PSNR/SSIM, latency, size (`RESULT_COLUMNS`).

    Latency follows `nnsearch.store.latency`: at `latency`'s configuration, by
    default the study's own (`study_configuration` on `device`); `latency_ms` is
    the measured figure where one exists, else the prediction (`measured_ms` and
    `predicted_ms` hold both).
    """
    query = latency or study_configuration(store, study, device)
    return StudyReader(store, study, query).results()


def epoch_metric(store: Store, study: str, metric: str = "psnr", state: str = "complete") -> pd.DataFrame:
    """Per-epoch values of `metric` for the trials of `study` in `state`: trial, nn, epoch, value."""
    return StudyReader(store, study, LatencyQuery()).epochs(metric, state)


def _stats(conn: Connection, names: list[str]) -> pd.DataFrame:
    """Stat rows (nn, prm, dataset, metric, epoch, accuracy) of the models named."""
    columns = (Stat.nn, Stat.prm, Stat.dataset, Stat.metric, Stat.epoch, Stat.accuracy)
    rows = []
    for start in range(0, len(names), _CHUNK):
        rows += conn.execute(select(*columns).where(Stat.nn.in_(names[start:start + _CHUNK]))).all()
    return pd.DataFrame(rows, columns=[c.key for c in columns])


def _result_rows(conn: Connection, links: pd.DataFrame, stats: pd.DataFrame, names: list[str],
                 query: LatencyQuery) -> pd.DataFrame:
    """`RESULT_COLUMNS` rows for `links` from their stat rows, sizes and latency."""
    last = stats[stats["epoch"] == stats.groupby(["trial"])["epoch"].transform("max")]
    quality = last[last["metric"].isin(["psnr", "ssim"])].pivot_table(
        index="trial", columns="metric", values="accuracy", aggfunc="first")
    rows = links.set_index("trial")
    for metric in ("psnr", "ssim"):
        rows[metric] = quality[metric] if metric in quality else float("nan")
    sizes = dict(((nn, (p, m)) for nn, p, m in conn.execute(
        select(NNStat.nn, NNStat.params, NNStat.macs).where(NNStat.nn.in_(names)))))
    found = student_latencies(conn, names, query)
    rows["measured_ms"] = rows["nn"].map(lambda nn: _ms(found.get(nn), "measured"))
    rows["predicted_ms"] = rows["nn"].map(lambda nn: _ms(found.get(nn), "predicted"))
    rows["latency_ms"] = rows["measured_ms"].fillna(rows["predicted_ms"])
    rows["params"] = rows["nn"].map(lambda nn: sizes.get(nn, (None, None))[0]).astype("Int64")
    rows["macs"] = rows["nn"].map(lambda nn: sizes.get(nn, (None, None))[1]).astype("float64")
    return rows.reset_index().sort_values("trial")[RESULT_COLUMNS]


def _ms(found, kind: str) -> float:  # found: StudentLatency | None
    stat = None if found is None else getattr(found, kind)
    return float("nan") if stat is None else stat.ms


def _concat(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    return new.copy() if old.empty else pd.concat([old, new], ignore_index=True)
