"""This machine's lookup-table entries, kept across stores in the cache folder.

A lookup-table entry measured here is a fact about this machine, not about one
store: `MachineLut` keeps every entry measured on this host in
`<cache_dir>/machine_lut.sqlite` (`nnsearch.common.paths.cache_dir`), keyed by
machine identity, device profile (name, runtime, runtime version, threads),
precision and op key. `MachineCachedBackend` puts it behind a store's
`latency_lut`: entries the store lacks are copied from the machine table into
the store, and new measurements are written to both, so a second study on the
machine (in a new store) needs no measuring before its first trial.

Machine identity (`machine_id`): a hash of the CPU model, the number of
logical CPUs and the architecture, or `$NNSEARCH_MACHINE_ID` when set. The
runtime version is part of every key, so upgrading ai-edge-litert starts a new
table. Only entries measured on this host are kept (not imported ones).

The file is plain SQLite (several workers share it: writes wait up to 60 s for
each other). A file that is not a readable machine table (corrupt, or another
format) is moved aside to `machine_lut.sqlite.unreadable-<time>` with a
warning and rebuilt; where the folder cannot be written the cache is skipped
with a warning. Neither stops a study. `NNSEARCH_MACHINE_LUT=off` disables it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from nnsearch.common.paths import cache_dir
from nnsearch.common.precision import Precision
from nnsearch.latency.probes import KEY_COLUMNS, OpKey
from nnsearch.latency.table import DeviceProfile, LutBackend, LutEntry, can_measure

FILE_NAME = "machine_lut.sqlite"
FORMAT_VERSION = 1
_PROFILE = ("device", "runtime", "runtime_version", "threads", "precision")
_STAT = ("median_ms", "min_ms", "max_ms", "runs")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lut_entry (machine TEXT NOT NULL, "
    + ", ".join(
        f"{c} {'INTEGER' if c in ('threads', 'in_h', 'in_w', 'in_c', 'out_c', 'kernel', 'stride') else 'TEXT'} NOT NULL"
        for c in (*_PROFILE, *KEY_COLUMNS)
    )
    + ", median_ms REAL NOT NULL, min_ms REAL, max_ms REAL, runs INTEGER NOT NULL, "
    + f"PRIMARY KEY (machine, {', '.join((*_PROFILE, *KEY_COLUMNS))}))"
)


def machine_id() -> str:
    """This machine's identity in the table (see the module docstring)."""
    if os.environ.get("NNSEARCH_MACHINE_ID"):
        return os.environ["NNSEARCH_MACHINE_ID"]
    facts = f"{_cpu_model()}|{os.cpu_count()}|{platform.machine()}"
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown-cpu"


def _precision(device: DeviceProfile) -> str:
    """The profile's precision (fp32 for profiles that do not carry one)."""
    return str(getattr(device, "precision", Precision.FP32))


def _warn(message: str) -> None:
    print(f"nnsearch: warning: {message}", file=sys.stderr, flush=True)


class MachineLut:
    """This machine's measured entries in an SQLite file (a `LutBackend` for profiles measurable here)."""

    def __init__(self, path: str | Path | None = None, machine: str | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / FILE_NAME
        self.machine = machine or machine_id()
        self._usable = True

    @staticmethod
    def serves(device: DeviceProfile) -> bool:
        """Whether entries of `device` are measured on this host (same runtime and version)."""
        return can_measure(device)

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        wanted = set(keys)
        if not wanted or not self.serves(device):
            return {}
        ops = sorted({k.op for k in wanted})
        query = (
            f"SELECT {', '.join((*KEY_COLUMNS, *_STAT))} FROM lut_entry WHERE machine = ? AND "
            + " AND ".join(f"{c} = ?" for c in _PROFILE)
            + f" AND op IN ({', '.join('?' * len(ops))})"
        )
        rows = self._run(lambda conn: conn.execute(query, (self.machine, *self._profile(device), *ops)).fetchall(), [])
        found = {}
        for row in rows:
            key = OpKey(*row[: len(KEY_COLUMNS)])
            if key in wanted:
                median, low, high, runs = row[len(KEY_COLUMNS) :]
                found[key] = LutEntry(device, key, "measured", median_ms=median, min_ms=low, max_ms=high, runs=runs)
        return found

    def put(self, entries: Iterable[LutEntry]) -> None:
        rows = [
            (self.machine, *self._profile(e.device), *e.key, e.median_ms, e.min_ms, e.max_ms, e.runs)
            for e in entries
            if e.source == "measured" and self.serves(e.device)
        ]
        if not rows:
            return
        columns = ("machine", *_PROFILE, *KEY_COLUMNS, *_STAT)
        statement = f"INSERT OR REPLACE INTO lut_entry ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        self._run(lambda conn: conn.executemany(statement, rows), None)

    def __len__(self) -> int:
        return int(self._run(lambda conn: conn.execute("SELECT count(*) FROM lut_entry").fetchone()[0], 0))

    @staticmethod
    def _profile(device: DeviceProfile) -> tuple:
        return device.name, device.runtime, device.runtime_version, device.threads, _precision(device)

    def _run(self, work, fallback):  # work: Callable[[sqlite3.Connection], T] -> T
        """`work` in one transaction; an unreadable file is moved aside and rebuilt once, else `fallback`."""
        for attempt in (1, 2):
            if not self._usable:
                return fallback
            try:
                return self._transaction(work)
            except (sqlite3.DatabaseError, OSError) as exc:  # corrupt, not a database, other format, unwritable
                if (
                    attempt == 1
                    and isinstance(exc, sqlite3.DatabaseError)
                    and self.path.is_file()
                    and not isinstance(exc, sqlite3.OperationalError)
                ):
                    self._move_aside(exc)
                    continue
                self._usable = False
                _warn(
                    f"this machine's lookup table {self.path} cannot be used ({exc}); entries are measured and "
                    "kept in the store only"
                )
        return fallback

    def _transaction(self, work):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, FORMAT_VERSION):
                raise sqlite3.DatabaseError(f"format version {version}, expected {FORMAT_VERSION}")
            with conn:
                if version == 0:
                    conn.execute(_SCHEMA)
                    conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                return work(conn)
        finally:
            conn.close()

    def _move_aside(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:  # another worker moved it first
            return
        _warn(
            f"{self.path} is not a readable machine lookup table ({exc}); moved it to {aside.name} and "
            "started a new one"
        )


class MachineCachedBackend:
    """A store's `LutBackend` with this machine's table behind it (see the module docstring)."""

    def __init__(self, store_backend: LutBackend, machine: MachineLut | None) -> None:
        self.store_backend = store_backend
        self.machine = machine
        self.copied = 0  # entries copied from the machine table into the store

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        keys = list(keys)
        found = self.store_backend.get(device, keys)
        missing = [key for key in keys if key not in found]
        if missing and self.machine is not None:
            copied = self.machine.get(device, missing)
            if copied:
                self.store_backend.put(copied.values())
                self.copied += len(copied)
                found.update(copied)
        return found

    def put(self, entries: Iterable[LutEntry]) -> None:
        entries = list(entries)
        self.store_backend.put(entries)
        if self.machine is not None:
            self.machine.put(entries)


def machine_lut() -> MachineLut | None:
    """This machine's table in the cache folder, or None when `NNSEARCH_MACHINE_LUT=off`."""
    if os.environ.get("NNSEARCH_MACHINE_LUT", "").lower() in ("off", "0", "no", "false"):
        return None
    return MachineLut()
