"""`LutBackend` over the store's `latency_lut` table (one row per device profile x key)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nnsearch.latency.probes import KEY_COLUMNS, OpKey
from nnsearch.latency.table import DeviceProfile, LutEntry
from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyLUT

_TABLE = LatencyLUT.__table__
#: The `latency_lut` columns that make a `DeviceProfile`, in its field order.
_PROFILE_COLUMNS = (
    LatencyLUT.device,
    LatencyLUT.runtime,
    LatencyLUT.runtime_version,
    LatencyLUT.threads,
    LatencyLUT.precision,
)


class SqlLutBackend:
    """Lookup-table entries in `latency_lut`; `put` replaces rows with the same profile and key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        wanted = set(keys)
        if not wanted:
            return {}
        query = select(_TABLE).where(*_device_filter(device, {k.op for k in wanted}))
        rows = self.store.reading(lambda conn: conn.execute(query).all())
        found = ((_key(row), row) for row in rows)
        return {key: _entry(device, row) for key, row in found if key in wanted}

    def put(self, entries: Iterable[LutEntry]) -> None:
        by_device: dict[DeviceProfile, list[LutEntry]] = {}
        for entry in entries:
            by_device.setdefault(entry.device, []).append(entry)
        for device, group in by_device.items():

            def write(session: Session, d: DeviceProfile = device, g: list[LutEntry] = group) -> None:
                upsert_entries(session, d, g)

            self.store.write(write)


def device_profiles(
    store: Store, name: str | None = None, threads: int | None = None, precision: str | None = None
) -> list[DeviceProfile]:
    """The device profiles with stored entries (optionally one name, thread count, precision), sorted."""
    query = select(*_PROFILE_COLUMNS).distinct()
    if precision is not None:
        query = query.where(LatencyLUT.precision == precision)
    if name is not None:
        query = query.where(LatencyLUT.device == name)
    if threads is not None:
        query = query.where(LatencyLUT.threads == threads)
    rows = store.reading(lambda conn: conn.execute(query).all())
    return sorted((DeviceProfile(*row) for row in rows), key=_order)


def lut_summary(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Per device profile: entry count, counts by source and by op, the total of the entries' `LutEntry.ms`."""
    columns = _PROFILE_COLUMNS
    query = select(
        *columns,
        LatencyLUT.source,
        LatencyLUT.op,
        func.count(),
        func.sum(func.coalesce(LatencyLUT.min_ms, LatencyLUT.median_ms)),
    ).group_by(*columns, LatencyLUT.source, LatencyLUT.op)
    if name is not None:
        query = query.where(LatencyLUT.device == name)
    summary: dict[DeviceProfile, dict[str, Any]] = {}
    for *profile, source, op, count, total in store.reading(lambda conn: conn.execute(query).all()):
        item = summary.setdefault(
            DeviceProfile(*cast("list[Any]", profile)), {"entries": 0, "sources": {}, "ops": {}, "total_ms": 0.0}
        )
        item["entries"] += count
        item["sources"][source] = item["sources"].get(source, 0) + count
        item["ops"][op] = item["ops"].get(op, 0) + count
        item["total_ms"] += float(total or 0.0)
    return [{"device": device, **summary[device]} for device in sorted(summary, key=_order)]


def _order(device: DeviceProfile) -> tuple[str, int, str, str, str]:
    return device.name, device.threads, device.precision, device.runtime, device.runtime_version


def _device_filter(device: DeviceProfile, ops: set[str]) -> tuple[Any, ...]:
    """WHERE clauses selecting one device profile's rows of the given ops."""
    return (
        LatencyLUT.device == device.name,
        LatencyLUT.runtime == device.runtime,
        LatencyLUT.runtime_version == device.runtime_version,
        LatencyLUT.threads == device.threads,
        LatencyLUT.precision == device.precision,
        LatencyLUT.op.in_(sorted(ops)),
    )


def _key(row: Any) -> OpKey:
    return OpKey(*(getattr(row, c) for c in KEY_COLUMNS))


def stored_entry(session: Session, device: DeviceProfile, key: OpKey) -> LutEntry | None:
    """The stored entry of one key of one device profile, None if there is none."""
    row = _device_rows(session, device, {key.op}).get(key)
    return None if row is None else _entry(device, row)


def stored_keys(store: Store, name: str, threads: int, precision: str) -> set[OpKey]:
    """Keys with an entry for device name `name` at `threads` and `precision`, whatever runtime measured them."""
    query = select(*(getattr(LatencyLUT, c) for c in KEY_COLUMNS)).where(
        LatencyLUT.device == name, LatencyLUT.threads == int(threads), LatencyLUT.precision == precision
    )
    return {OpKey(*row) for row in store.reading(lambda conn: conn.execute(query).all())}


def _device_rows(session: Session, device: DeviceProfile, ops: set[str]) -> dict[OpKey, LatencyLUT]:
    """ORM rows of one device profile (restricted to `ops`), by key."""
    return {_key(row): row for row in session.scalars(select(LatencyLUT).where(*_device_filter(device, ops)))}


def _entry(device: DeviceProfile, row: Any) -> LutEntry:
    return LutEntry(
        device, _key(row), row.source, median_ms=row.median_ms, min_ms=row.min_ms, max_ms=row.max_ms, runs=row.runs
    )


def _values(entry: LutEntry) -> dict[str, object]:
    return {**entry.stat_values(), "source": entry.source}


def upsert_entries(session: Session, device: DeviceProfile, entries: list[LutEntry]) -> None:
    """Write entries of one device profile in `session`, replacing those with the same key."""
    existing = _device_rows(session, device, {e.key.op for e in entries})
    for entry in entries:
        row = existing.get(entry.key)
        if row is None:
            row = LatencyLUT(
                device=device.name,
                runtime=device.runtime,
                runtime_version=device.runtime_version,
                threads=device.threads,
                precision=device.precision,
                **entry.key._asdict(),
            )
            session.add(row)
            existing[entry.key] = row
        for column, value in _values(entry).items():
            setattr(row, column, value)
