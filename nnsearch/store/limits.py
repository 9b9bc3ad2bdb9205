"""What the store accepts, the same on every engine: checked before anything is written.

The limits come from the schema's column types, so SQLite (which would store
a 300-character name or a 70-bit integer) and PostgreSQL (which refuses them
mid-transaction) agree: text no longer than its column (`String(n)`), integers
within the column's 32- or 64-bit range, and finite floats (NaN and infinity
are refused: SQLite would turn NaN into NULL, PostgreSQL would store it). Only
training diagnostics (`train_stat`, optional) store a non-finite value, as NULL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Double, Float, Integer, String
from sqlalchemy.sql import FromClause

from nnsearch.errors import StoreError

_INT_BITS = ((BigInteger, 64), (Integer, 32))


def value_problem(table: FromClause, column: str, value: Any) -> str | None:
    """Why `value` does not fit `table.column` (None when it fits or is NULL)."""
    if value is None:
        return None
    kind = table.c[column].type
    if isinstance(kind, String) and kind.length is not None and isinstance(value, str):
        if len(value) > kind.length:
            return f"{column} {_short(value)} has {len(value)} characters; at most {kind.length} are stored"
    elif isinstance(kind, (Double, Float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            return f"{column} is {value!r}; expected a finite number"
    elif isinstance(kind, Integer) and isinstance(value, int) and not isinstance(value, bool):
        bits = next(b for t, b in _INT_BITS if isinstance(kind, t))
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return f"{column} {value} does not fit a {bits}-bit integer column (at most {2 ** (bits - 1) - 1})"
    return None


def check_row(table: FromClause, row: Mapping[str, Any], where: str) -> None:
    """StoreError naming `where` (a file, a model) when a value of `row` does not fit its column of `table`."""
    for column in row:
        if column in table.c:
            problem = value_problem(table, column, row[column])
            if problem:
                raise StoreError(f"{where}: {problem} (table {table.description}); nothing was written")


def finite_or_none(value: float | None) -> float | None:
    """A training diagnostic as stored: a non-finite one (a NaN loss) is unknown (NULL) on every engine."""
    return None if value is None or not math.isfinite(value) else value


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
