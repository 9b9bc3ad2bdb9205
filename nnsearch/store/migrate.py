"""Schema migrations: each step upgrades a store by one schema version.

A step is a function of an open `Connection`; `migrate` runs the steps and the
new version stamps inside the transaction in which `Store` opens the store,
under the schema lock, so a migration is all-or-nothing and runs once even
when several processes open an old store at the same moment.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy.engine import Connection

from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION

#: version -> function that upgrades a store from that version to version + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def migrate(conn: Connection, found: int, where: str = "the store") -> None:
    """Apply every migration from `found` up to the current schema version."""
    from nnsearch.store.engine import write_version

    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema {version} to {version + 1} for {where}")
        step(conn)
        write_version(conn, version + 1)
