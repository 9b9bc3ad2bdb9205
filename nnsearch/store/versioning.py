"""The schema version stamp and the migrations that bring an older store up to date.

A migration is a function of an open `Connection` registered in `MIGRATIONS`
under the version it upgrades from. `nnsearch.store.engine` runs them, with the
new version stamps, inside the transaction in which it opens the store and
under the schema lock, so a migration is all-or-nothing (on engines with
transactional DDL) and runs once even when several processes open an old store
at the same moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Table, inspect, select, text
from sqlalchemy.engine import Connection

from nnsearch.common.precision import Precision
from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION, Base, SchemaInfo


def read_version(conn: Connection) -> str | None:
    """The schema version stamp, or None when there is none."""
    return conn.scalar(select(SchemaInfo.value).where(SchemaInfo.key == "schema_version"))


def write_version(conn: Connection, version: int) -> None:
    """Stamp the store with `version`."""
    table = cast(Table, SchemaInfo.__table__)
    if conn.execute(table.update().where(table.c.key == "schema_version").values(value=str(version))).rowcount == 0:
        conn.execute(table.insert().values(key="schema_version", value=str(version)))


def rebuild_table(conn: Connection, name: str, fill: dict[str, Any]) -> None:
    """Recreate table `name` with its current definition, keeping its rows.

    Columns the old table lacks get the constant values in `fill`. This is how
    a migration changes a unique key or adds a NOT NULL column on every engine
    (SQLite cannot alter constraints). A table other tables point at must be
    rebuilt together with them: use `rebuild_tables`.
    """
    rebuild_tables(conn, {name: fill})


def rebuild_tables(conn: Connection, fills: dict[str, dict[str, Any]]) -> None:
    """Recreate several tables with their current definitions, keeping every row.

    `fills`: table name -> constant values for the columns its old version
    lacks. Every table holding a foreign key to a rebuilt one must be in
    `fills` too: all are copied aside first, then dropped children first (so
    no ON DELETE CASCADE fires and no engine refuses the drop), recreated
    parents first and refilled with their old ids.
    """
    tables = [t for t in Base.metadata.sorted_tables if t.name in fills]  # parents before children
    names = {t.name for t in tables}
    for table in Base.metadata.sorted_tables:
        pointing = {fk.column.table.name for fk in table.foreign_keys} & names
        if pointing and table.name not in names:
            raise StoreError(f"cannot rebuild {sorted(pointing)} alone: {table.name} has foreign keys to it")
    plans = [(table, _copy_plan(conn, table, fills[table.name])) for table in tables]
    for table in tables:
        conn.execute(text(f"CREATE TABLE {table.name}_migrating AS SELECT * FROM {table.name}"))
    for table in reversed(tables):
        conn.execute(text(f"DROP TABLE {table.name}"))
    for table, (columns, values, params) in plans:
        table.create(conn)
        conn.execute(text(f"INSERT INTO {table.name} ({columns}) SELECT {values} FROM {table.name}_migrating"), params)
    for table in reversed(tables):
        conn.execute(text(f"DROP TABLE {table.name}_migrating"))
        if conn.dialect.name == "postgresql" and "id" in table.c:  # copied ids: move the serial past them
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                )
            )


def _copy_plan(conn: Connection, table: Any, fill: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(column list, select list, bound fill values) that copy a table's old rows into its new shape."""
    old_columns = {column["name"] for column in inspect(conn).get_columns(table.name)}
    kept = [c.name for c in table.columns if c.name in old_columns]
    added = {key: value for key, value in fill.items() if key not in old_columns}
    missing = [c.name for c in table.columns if c.name not in old_columns and c.name not in added]
    if missing:
        raise StoreError(f"cannot migrate table {table.name}: no value for new column(s) {missing}")
    values = kept + [f":fill_{table.name}_{i}" for i in range(len(added))]
    params = {f"fill_{table.name}_{i}": value for i, value in enumerate(added.values())}
    return ", ".join(kept + list(added)), ", ".join(values), params


def _add_precision(conn: Connection) -> None:
    """1 -> 2: latency runs and lookup-table entries carry a precision (fp32 for everything before)."""
    for name in ("latency_run", "latency_lut"):
        rebuild_table(conn, name, {"precision": Precision.FP32.value})


def _stat_runs(conn: Connection) -> None:
    """2 -> 3: stats gain a repeat index `run` in their key (0 for every row before) and a nullable duration.

    `train_stat` points at `stat`, so both are rebuilt together (no diagnostics row is lost). The rebuild
    gives `stat` its current shape, so the rung a later schema added is filled here too (0).
    """
    rebuild_tables(conn, {"stat": {"run": 0, "rung": 0}, "train_stat": {}})


def _measure_queue(conn: Connection) -> None:
    """3 -> 4: the measurement queue of device agents (`measure_job`, `measure_agent`), empty."""
    for name in ("measure_job", "measure_agent"):
        Base.metadata.tables[name].create(conn, checkfirst=True)


def _rungs(conn: Connection) -> None:
    """4 -> 5: stats and trial links carry a multi-fidelity rung (0 for every row before), part of their keys."""
    rebuild_tables(conn, {"stat": {"rung": 0}, "train_stat": {}})
    rebuild_table(conn, "trial_link", {"rung": 0})


#: version -> the function that upgrades a store from that version to version + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_precision, 2: _stat_runs, 3: _measure_queue, 4: _rungs}


def migrate(conn: Connection, found: int, where: str = "the store") -> None:
    """Apply every migration from `found` up to the current schema version."""
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema {version} to {version + 1} for {where}")
        step(conn)
        write_version(conn, version + 1)
