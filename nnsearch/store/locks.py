"""Named locks held by one process at a time, across processes and (with a database server) machines.

An advisory lock on PostgreSQL (released by the server if the holder dies),
`GET_LOCK` on MySQL/MariaDB, and for SQLite a POSIX byte-range lock in
`<database file>.lock` (released by the kernel if the holder dies; it
serialises processes, not threads of one process).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from nnsearch.store.engine import Store

#: (acquire, release) statements of a server-side named lock, per dialect.
_SERVER_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
    "mysql": ("SELECT GET_LOCK(CONCAT('nnsearch_', :key), -1)", "SELECT RELEASE_LOCK(CONCAT('nnsearch_', :key))"),
    "mariadb": ("SELECT GET_LOCK(CONCAT('nnsearch_', :key), -1)", "SELECT RELEASE_LOCK(CONCAT('nnsearch_', :key))"),
}


@contextmanager
def advisory_lock(store: Store, name: str) -> Iterator[None]:
    """A lock named `name` held by one process at a time, across processes and (with a server) machines."""
    key = int.from_bytes(hashlib.sha256(f"nnsearch:{name}".encode()).digest()[:8], "big", signed=True)
    if store.dialect not in _SERVER_LOCKS:
        with _file_lock(_sqlite_lock_path(store), key & 0x7FFFFFFF):
            yield
        return
    acquire, release = _SERVER_LOCKS[store.dialect]
    with store.engine.connect() as conn:
        conn.execute(text(acquire), {"key": key})
        try:
            yield
        finally:
            conn.execute(text(release), {"key": key})
            conn.commit()


def _sqlite_lock_path(store: Store) -> Path:
    """One lock file per SQLite database (each named lock is one byte of it)."""
    database = make_url(store.url).database
    if not database or database == ":memory:":
        return Path(os.environ.get("TMPDIR", "/tmp")) / f"nnsearch-{os.getpid()}.lock"
    return Path(f"{database}.lock")


@contextmanager
def _file_lock(path: Path, offset: int) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX, 1, offset)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN, 1, offset)
