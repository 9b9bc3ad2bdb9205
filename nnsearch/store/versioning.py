"""The schema version stamp and the migrations that bring an older store up to date.

A migration is a function of an open `Connection` registered in `MIGRATIONS`
under the version it upgrades from. `nnsearch.store.engine` runs them, with the
new version stamps, inside the transaction in which it opens the store and
under the schema lock, so a migration is all-or-nothing (on engines with
transactional DDL) and runs once even when several processes open an old store
at the same moment.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION, Base, SchemaInfo


def read_version(conn: Connection) -> str | None:
    """The schema version stamp, or None when there is none."""
    return conn.scalar(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version"))


def write_version(conn: Connection, version: int) -> None:
    """Stamp the store with `version`."""
    table = SchemaInfo.__table__
    if conn.execute(table.update().where(table.c.key == "schema_version").values(value=str(version))).rowcount == 0:
        conn.execute(table.insert().values(key="schema_version", value=str(version)))


def rebuild_table(conn: Connection, name: str, fill: dict[str, Any]) -> None:
    """Recreate table `name` with its current definition, keeping its rows.

    Columns the old table lacks get the constant values in `fill`. This is how
    a migration changes a unique key or adds a NOT NULL column on every engine
    (SQLite cannot alter constraints). Only for tables no foreign key points at.
    """
    old_columns = {column["name"] for column in inspect(conn).get_columns(name)}
    table = Base.metadata.tables[name]
    kept = [c.name for c in table.columns if c.name in old_columns]
    added = {key: value for key, value in fill.items() if key not in old_columns}
    missing = [c.name for c in table.columns if c.name not in old_columns and c.name not in added]
    if missing:
        raise StoreError(f"cannot migrate table {name}: no value for new column(s) {missing}")
    backup = f"{name}_migrating"
    conn.execute(text(f"CREATE TABLE {backup} AS SELECT * FROM {name}"))
    conn.execute(text(f"DROP TABLE {name}"))
    table.create(conn)
    columns = ", ".join(kept + list(added))
    values = ", ".join(kept + [f":fill_{i}" for i in range(len(added))])
    conn.execute(text(f"INSERT INTO {name} ({columns}) SELECT {values} FROM {backup}"),
                 {f"fill_{i}": value for i, value in enumerate(added.values())})
    conn.execute(text(f"DROP TABLE {backup}"))
    if conn.dialect.name == "postgresql" and "id" in kept:  # copied ids: move the serial past them
        conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                          f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"))


def _add_precision(conn: Connection) -> None:
    """1 -> 2: latency runs and lookup-table entries carry a precision (fp32 for everything before)."""
    for name in ("latency_run", "latency_lut"):
        rebuild_table(conn, name, {"precision": "fp32"})


#: version -> the function that upgrades a store from that version to version + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_precision}


def migrate(conn: Connection, found: int, where: str = "the store") -> None:
    """Apply every migration from `found` up to the current schema version."""
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema {version} to {version + 1} for {where}")
        step(conn)
        write_version(conn, version + 1)
