"""Dialect-aware bulk writes: "insert or ignore" and upsert on SQLite, PostgreSQL and MySQL/MariaDB.

Rows go in primary-key order (else unique-key order) so concurrent writers lock in one order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, UniqueConstraint
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from nnsearch.errors import StoreError

Executor = Session | Connection


def dialect_insert(executor: Executor, table: Table):  # -> Insert with on-conflict support
    """A dialect-specific INSERT for `table` (SQLite, PostgreSQL or MySQL/MariaDB)."""
    name = _dialect(executor)
    module = {"sqlite": sqlite, "postgresql": postgresql, "mysql": mysql, "mariadb": mysql}.get(name)
    if module is None:
        raise StoreError(f"unsupported database dialect {name!r}")
    return module.insert(table)


def insert_ignore(executor: Executor, model: type[Any], rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows, keeping existing ones with the same primary or unique key (any engine).

    Rows are sent sorted by primary key so concurrent writers lock in one order.
    """
    rows = _sorted_rows(model.__table__, rows)
    if not rows:
        return
    stmt = dialect_insert(executor, model.__table__)
    if _dialect(executor) in ("mysql", "mariadb"):  # a no-op update: INSERT IGNORE would hide other errors
        first = next(iter(model.__table__.primary_key.columns))
        stmt = stmt.on_duplicate_key_update({first.name: first})
    else:
        stmt = stmt.on_conflict_do_nothing()
    executor.execute(stmt, rows)


def upsert(executor: Executor, model: type[Any], rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert rows, overwriting the non-key columns of existing rows with the same primary key."""
    table = model.__table__
    rows = _sorted_rows(table, rows)
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect_insert(executor, table)
    if _dialect(executor) in ("mysql", "mariadb"):
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in rows[0] if c not in keys})
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in rows[0] if c not in keys}
        )
    executor.execute(stmt, rows)


def _dialect(executor: Executor) -> str:
    return executor.get_bind().dialect.name if isinstance(executor, Session) else executor.dialect.name


def _sorted_rows(table: Table, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows in primary-key order, else in unique-key order (a primary key the database assigns)."""
    rows = list(rows)
    if not rows:
        return rows
    candidates = [[c.name for c in table.primary_key.columns]]
    candidates += [[c.name for c in con.columns] for con in table.constraints if isinstance(con, UniqueConstraint)]
    for keys in candidates:
        if all(k in rows[0] for k in keys):
            try:
                rows.sort(key=lambda r: tuple(r[k] for k in keys))
            except TypeError:  # mixed types in a key column: keep the given order
                pass
            break
    return rows
