"""Lookup-table entries measured at a bad moment: how they are spotted and measured again.

An entry is kept per device profile and reused by every later study, so a probe
timed while the machine was busy (another job on its cores, a thermal dip on a
phone) would stay wrong for good. Two signs give it away:

- **repeat timings interleaved in time**: the same probe timed again later, with
  other work in between, comes out clearly faster (`repeat_disagrees`);
- **a whole model against the sum of its entries**: the table predicts a
  measured model clearly slower than it ran (`suspect_inflated`), so some of
  its entries are too high.

Either way the entries concerned are timed again and pooled with what was
stored (`LatencyStat.pooled`: the minimum over both, which a contended timing
can only raise, so the quieter timing wins). On this host a study does it at
once (`remeasure`, two interleaved passes); for a device served by agents the
agent queues re-measurement jobs (`nnsearch.latency.agents.landing`).
"""

from __future__ import annotations

from collections.abc import Iterable

from nnsearch.latency.probes import OpKey
from nnsearch.latency.table import LatencyTable, LutEntry, measure_keys
from nnsearch.store.stat import LatencyStat

#: A whole model predicted this share slower than measured, or an entry this much slower than its repeat,
#: is suspect (the repeat-vs-repeat spread of a loaded 2-core host is about 11%: GUIDE.md section 3).
TOLERANCE = 0.15
#: Interleaved passes of a re-measurement on this host.
PASSES = 2


def suspect_inflated(predicted_ms: float, measured_ms: float, tolerance: float = TOLERANCE) -> bool:
    """Whether the table over-predicts a measured whole model by more than `tolerance`."""
    return measured_ms > 0 and predicted_ms > measured_ms * (1 + tolerance)


def repeat_disagrees(stored: LatencyStat, repeat: LatencyStat, tolerance: float = TOLERANCE) -> bool:
    """Whether a stored entry is more than `tolerance` slower than a later repeat of its timing."""
    return repeat.ms > 0 and stored.ms > repeat.ms * (1 + tolerance)


def refreshed(stored: LatencyStat | None, repeat: LatencyStat) -> LatencyStat:
    """The entry's statistic after a repeat timing: both pooled (the quieter minimum wins)."""
    return repeat.stat if stored is None else LatencyStat.pooled([stored, repeat])


def remeasure(table: LatencyTable, keys: Iterable[OpKey], passes: int = PASSES) -> list[tuple[OpKey, float, float]]:
    """Time the entries of `keys` again on this host (interleaved passes), pool and store them.

    Returns (key, stored ms, new ms) for each entry that was inflated by more than `TOLERANCE`.
    """
    keys = sorted(set(keys))
    stored = table.backend.get(table.device, keys)
    repeats = measure_keys(keys, table.device, runs=table.runs, warmup=table.warmup, passes=passes)
    entries, inflated = [], []
    for repeat in repeats:
        old = stored.get(repeat.key)
        entries.append(LutEntry(table.device, repeat.key, "measured", **refreshed(old, repeat).stat_values()))
        if old is not None and repeat_disagrees(old, repeat):
            inflated.append((repeat.key, old.ms, repeat.ms))
    table.add(entries)
    return inflated
