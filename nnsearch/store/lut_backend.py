"""`LutBackend` over the store's `latency_lut` table (one row per device profile x key)."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from nnsearch.latency import DeviceProfile, LutEntry
from nnsearch.lut_probes import KEY_COLUMNS, OpKey
from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyLUT


class SqlLutBackend:
    """Lookup-table entries in `latency_lut`; `put` replaces rows with the same profile and key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        wanted = set(keys)
        if not wanted:
            return {}
        with self.store.session() as session:
            rows = _device_rows(session, device, {k.op for k in wanted})
            return {key: _entry(device, row) for key, row in rows.items() if key in wanted}

    def put(self, entries: Iterable[LutEntry]) -> None:
        by_device: dict[DeviceProfile, list[LutEntry]] = {}
        for entry in entries:
            by_device.setdefault(entry.device, []).append(entry)
        for device, group in by_device.items():
            self.store.write(lambda session, d=device, g=group: _upsert(session, d, g))


def _device_rows(session: Session, device: DeviceProfile, ops: set[str]) -> dict[OpKey, LatencyLUT]:
    """Rows of one device profile (restricted to `ops`), by key."""
    query = select(LatencyLUT).where(
        LatencyLUT.device == device.name,
        LatencyLUT.runtime == device.runtime,
        LatencyLUT.runtime_version == device.runtime_version,
        LatencyLUT.threads == device.threads,
        LatencyLUT.op.in_(sorted(ops)),
    )
    return {OpKey(*(getattr(row, c) for c in KEY_COLUMNS)): row for row in session.scalars(query)}


def _entry(device: DeviceProfile, row: LatencyLUT) -> LutEntry:
    key = OpKey(*(getattr(row, c) for c in KEY_COLUMNS))
    return LutEntry(device, key, row.median_ms, row.min_ms, row.max_ms, row.runs, row.source)


def _values(entry: LutEntry) -> dict[str, object]:
    return {"median_ms": entry.median_ms, "min_ms": entry.min_ms, "max_ms": entry.max_ms,
            "runs": entry.runs, "source": entry.source}


def _upsert(session: Session, device: DeviceProfile, entries: list[LutEntry]) -> None:
    existing = _device_rows(session, device, {e.key.op for e in entries})
    for entry in entries:
        row = existing.get(entry.key)
        if row is None:
            row = LatencyLUT(device=device.name, runtime=device.runtime, runtime_version=device.runtime_version,
                             threads=device.threads, **entry.key._asdict())
            session.add(row)
            existing[entry.key] = row
        for column, value in _values(entry).items():
            setattr(row, column, value)
