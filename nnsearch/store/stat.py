"""`LatencyStat`: the one timing statistic (median, minimum, maximum over runs) every latency carries.

A whole-model timing (`nnsearch.latency.tflite.Timing`), a lookup-table entry
(`nnsearch.latency.table.LutEntry`) and a stored latency figure
(`nnsearch.store.record.LatencyRecord`) are each a `LatencyStat` plus what
they are about. `LatencyStat.ms` is the figure nnsearch compares, sums and
ranks by: the minimum over runs, or the median where no minimum was recorded
(see `nnsearch.latency.table` for why the minimum).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict


class StatValues(TypedDict):
    """The statistic's columns by name (`LatencyStat.stat_values`), typed for `**` into a record."""

    median_ms: float
    min_ms: float | None
    max_ms: float | None
    runs: int


#: What `LatencyStat.ms` measures, in the words the model card, the CLI and the docs all use.
STATISTIC = "minimum over timed runs of the invoking thread's CPU time"
#: The two cases the short name leaves out.
STATISTIC_DETAIL = "the wall-clock time with more than one thread; the median where a record has no minimum"


@dataclass(frozen=True, kw_only=True)
class LatencyStat:
    """Milliseconds per call over `runs` timed runs: median, and minimum/maximum where recorded."""

    median_ms: float
    min_ms: float | None = None
    max_ms: float | None = None
    runs: int = 1

    @property
    def ms(self) -> float:
        """The figure compared and summed: `min_ms`, or `median_ms` when no minimum was recorded."""
        return self.min_ms if self.min_ms is not None else self.median_ms

    @property
    def stat(self) -> LatencyStat:
        """Just the statistic (without what a subclass adds)."""
        return LatencyStat(median_ms=self.median_ms, min_ms=self.min_ms, max_ms=self.max_ms, runs=self.runs)

    def stat_values(self) -> StatValues:
        """The statistic's columns, as stored in `latency_run` and `latency_lut`."""
        return StatValues(median_ms=self.median_ms, min_ms=self.min_ms, max_ms=self.max_ms, runs=self.runs)

    @classmethod
    def of_samples(cls, samples_ms: Sequence[float]) -> LatencyStat:
        """The statistic of timed runs (ms per call)."""
        return LatencyStat(
            median_ms=statistics.median(samples_ms),
            min_ms=min(samples_ms),
            max_ms=max(samples_ms),
            runs=len(samples_ms),
        )

    @staticmethod
    def pooled(stats: Iterable[LatencyStat]) -> LatencyStat:
        """Repeated timings of one thing pooled: median of medians, overall min and max, summed runs."""
        stats = list(stats)
        mins = [s.min_ms for s in stats if s.min_ms is not None]
        maxs = [s.max_ms for s in stats if s.max_ms is not None]
        return LatencyStat(
            median_ms=statistics.median(s.median_ms for s in stats),
            min_ms=min(mins, default=None),
            max_ms=max(maxs, default=None),
            runs=sum(s.runs for s in stats),
        )
