"""The latency of a student: one rule, used by every reader (study, live status, report, pareto, data(), replay).

`student_latency` answers "what is the latency of student S on device profile
D at HxW, T threads, precision P" from the store's `latency_run` records;
`student_latencies` answers it for many students in one batched read. The rule:

1. **Records considered**: those of the student on the device profile name at
   the precision (default fp32), whatever runtime version wrote them.
2. **Configuration** (input size and threads): what the caller gives. Where it
   gives none: a study's readers use the study's latency target from its
   stored configuration (`study_configuration`); other readers (`data()`
   without one study) take the student's largest recorded input (height x
   width), then the fewest threads recorded at that size. A height or width or
   thread count that is given restricts the choice to it.
3. **Measured before predicted**: at that configuration a whole-model
   measurement wins over the lookup-table prediction; the prediction is the
   figure only where nothing was measured.
4. **Statistic**: `LatencyStat.ms` (the minimum over runs, the median where no
   minimum was recorded) of the records of that kind at that configuration
   pooled (`LatencyStat.pooled`): a student timed twice has the smaller of the
   two minimums.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from nnsearch.common.precision import Precision
from nnsearch.common.study_attrs import CONFIG_ATTR
from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyRun
from nnsearch.store.stat import LatencyStat

_CHUNK = 2000
_COLUMNS = (
    LatencyRun.nn,
    LatencyRun.height,
    LatencyRun.width,
    LatencyRun.threads,
    LatencyRun.kind,
    LatencyRun.median_ms,
    LatencyRun.min_ms,
    LatencyRun.max_ms,
    LatencyRun.runs,
)


@dataclass(frozen=True)
class LatencyQuery:
    """Which latency: a device profile name, and optionally the input size, thread count and precision."""

    device: str = "host-cpu"
    height: int | None = None
    width: int | None = None
    threads: int | None = None
    precision: str = Precision.FP32


@dataclass(frozen=True)
class StudentLatency:
    """A student's latency by the module's rule: the configuration chosen and its two figures."""

    nn: str
    device: str
    precision: str
    height: int
    width: int
    threads: int
    measured: LatencyStat | None
    predicted: LatencyStat | None

    @property
    def kind(self) -> str:
        """'measured' where a measurement exists at the configuration, else 'predicted'."""
        return "measured" if self.measured is not None else "predicted"

    @property
    def stat(self) -> LatencyStat:
        """The figure's statistic: the measured one, else the predicted one."""
        chosen = self.measured or self.predicted
        assert chosen is not None  # a StudentLatency is only made from at least one record
        return chosen

    @property
    def ms(self) -> float:
        """The latency in ms (`LatencyStat.ms` of `stat`)."""
        return self.stat.ms


def student_latencies(
    source: Store | Connection, names: Iterable[str], query: LatencyQuery = LatencyQuery()
) -> dict[str, StudentLatency]:
    """`StudentLatency` by name for the students among `names` with a record matching `query`."""
    if isinstance(source, Store):
        return source.reading(lambda conn: student_latencies(conn, names, query))
    where = [LatencyRun.device == query.device, LatencyRun.precision == query.precision]
    for column, value in (
        (LatencyRun.height, query.height),
        (LatencyRun.width, query.width),
        (LatencyRun.threads, query.threads),
    ):
        if value is not None:
            where.append(column == int(value))
    by_config: dict[str, dict[tuple[int, int, int], dict[str, list[LatencyStat]]]] = {}
    wanted = sorted(set(names))
    for start in range(0, len(wanted), _CHUNK):
        rows = source.execute(select(*_COLUMNS).where(LatencyRun.nn.in_(wanted[start : start + _CHUNK]), *where))
        for nn, height, width, threads, kind, median, low, high, runs in rows:
            stat = LatencyStat(median_ms=median, min_ms=low, max_ms=high, runs=runs)
            kinds = by_config.setdefault(nn, {}).setdefault((int(height), int(width), int(threads)), {})
            kinds.setdefault(kind, []).append(stat)
    return {nn: _chosen(nn, query, configs) for nn, configs in by_config.items()}


def student_latency(
    store: Store,
    nn: str,
    device: str = "host-cpu",
    *,
    height: int | None = None,
    width: int | None = None,
    threads: int | None = None,
    precision: str = Precision.FP32,
) -> StudentLatency | None:
    """The latency of student `nn` on `device` at height x width, `threads`, `precision` (see the module rule).

    None when the store holds no matching record. Unset height, width and
    threads are chosen by the rule (largest recorded input, then fewest threads).
    """
    query = LatencyQuery(device, height, width, threads, precision)
    return student_latencies(store, [nn], query).get(nn)


def _chosen(
    nn: str, query: LatencyQuery, configs: dict[tuple[int, int, int], dict[str, list[LatencyStat]]]
) -> StudentLatency:
    """The rule's configuration (largest input, then fewest threads) and its pooled figures."""
    height, width, threads = min(configs, key=lambda c: (-c[0] * c[1], c[2], -c[0]))
    kinds = configs[(height, width, threads)]
    measured, predicted = (LatencyStat.pooled(kinds[k]) if k in kinds else None for k in ("measured", "predicted"))
    return StudentLatency(nn, query.device, query.precision, height, width, threads, measured, predicted)


def study_configuration(
    source: Store | Connection, study: str, device: str | None = None, precision: str | None = None
) -> LatencyQuery:
    """The study's latency target (device, height, width, threads, precision) from its stored configuration.

    `device` and `precision`, where given, replace the study's own (the same
    resolution and threads on another device profile or at another precision).
    A study without a stored configuration (or no such study) gives
    `LatencyQuery(device)`: the module's rule then picks the configuration.
    """
    stored = stored_latency_target(source, study)
    if stored is None:
        return LatencyQuery(device or "host-cpu", precision=precision or Precision.FP32)
    return LatencyQuery(
        device or str(stored.get("device", "host-cpu")),
        int(stored["height"]),
        int(stored["width"]),
        int(stored["threads"]),
        Precision.parse(precision or stored.get("precision") or Precision.FP32),
    )


def stored_latency_target(source: Store | Connection, study: str) -> dict[str, Any] | None:
    """The `latency` section of study `study`'s stored configuration (`nnsearch.search.config`), or None.

    Read with plain SQL from the Optuna study's user attribute `config` in the
    same database, so readers of the store need neither Optuna nor the search stage.
    """
    if isinstance(source, Store):
        return source.reading(lambda conn: stored_latency_target(conn, study))
    if not inspect(source).has_table("study_user_attributes"):
        return None
    row = source.execute(
        text(
            "SELECT a.value_json FROM study_user_attributes a JOIN studies s ON s.study_id = a.study_id "
            "WHERE s.study_name = :study AND a.key = :key"
        ),
        {"study": study, "key": CONFIG_ATTR},
    ).first()
    if row is None:
        return None
    settings = json.loads(row[0])
    latency = settings.get("latency") if isinstance(settings, dict) else None
    if not isinstance(latency, dict) or not {"height", "width", "threads"} <= set(latency):
        return None
    if "precision" not in latency and "precision" in settings:  # the flat format of earlier versions
        latency = {**latency, "precision": settings["precision"]}
    return latency
