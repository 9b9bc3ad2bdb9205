"""Opening a store: URL resolution, engine settings, schema creation and version check.

Writes are safe from several processes at once: on SQLite every write
transaction starts with `BEGIN IMMEDIATE` (it takes the write lock up front, so
it waits on the busy timeout instead of failing with "database is locked" when
a read would have to be upgraded), and on PostgreSQL schema creation and
migration run under an advisory lock. `Store.write` retries what is left:
lock time-outs, deadlocks, serialization failures and unique-key races.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from nnsearch.common.paths import default_db_path
from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION, Base
from nnsearch.store.versioning import migrate, read_version, write_version

T = TypeVar("T")

#: Dialects the store supports (MySQL/MariaDB needs a driver such as pymysql).
SUPPORTED_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb")
#: Execution option that makes a SQLite transaction start with BEGIN IMMEDIATE.
WRITE_OPTION = "nnsearch_write"
#: Key of the PostgreSQL advisory lock held while creating or migrating the schema.
_PG_LOCK_KEY = 0x6E6E7365  # "nnse"
BUSY_TIMEOUT_S = 60


def resolve_db_url(db: str | None = None) -> str:
    """`db` argument, else $NNSEARCH_DB, else the default SQLite file.

    A plain file path is accepted and turned into a `sqlite:///` URL.
    """
    value = str(db or os.environ.get("NNSEARCH_DB") or default_db_path())
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    try:
        make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"database URL {value!r} is not valid: {exc}") from None
    return value


def make_engine(url: str) -> Engine:
    """An engine with settings safe for several writers (WAL, busy timeout, FKs on SQLite)."""
    dialect = make_url(url).get_backend_name()
    if dialect not in SUPPORTED_DIALECTS:
        raise StoreError(f"unsupported database {dialect!r}; use SQLite, PostgreSQL or MySQL/MariaDB")
    if dialect == "sqlite":
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection, _record) -> None:
    # The driver must not open transactions itself: `_sqlite_begin` does, so that DDL is
    # transactional and write transactions can start with BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """An nnsearch store at a database URL; creates the schema on first use.

    `create=False` opens only an existing store (a missing SQLite file is an error).
    """

    def __init__(self, db: str | None = None, *, create: bool = True) -> None:
        self.url = resolve_db_url(db)
        try:
            url = make_url(self.url)
            if url.get_backend_name() == "sqlite":
                self._check_sqlite_file(url.database, create)
            self.engine = make_engine(self.url)
            self.write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
            self._sessions = sessionmaker(self.write_engine, expire_on_commit=False)
            retrying(lambda: self._prepare(create), f"opening the store at {self.display_url}")
        except ModuleNotFoundError as exc:
            raise StoreError(f"the database driver for {self.display_url} is not installed ({exc.name})") from None
        except DatabaseError as exc:  # e.g. a file that is not an SQLite database
            raise StoreError(
                f"cannot open the store at {self.display_url}: {' '.join(str(exc.orig).split())}; "
                "expected an nnsearch store (an SQLite file or a database URL)"
            ) from None

    def _check_sqlite_file(self, database: str | None, create: bool) -> None:
        """A missing file is an error without `create`; with it, its folder is created (or a clear error)."""
        if _sqlite_file_exists(database):
            return
        if not create:
            raise StoreError(f"no nnsearch store at {self.display_url} (the file does not exist)")
        folder = Path(str(database)).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {folder} for the new store {self.display_url}: "
                f"{exc.strerror or exc}; give --db a file in a writable folder"
            ) from None

    @property
    def display_url(self) -> str:
        """The URL with any password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """`sqlite`, `postgresql`, `mysql` or `mariadb`."""
        return self.engine.dialect.name

    def _prepare(self, create: bool) -> None:
        with self.engine.connect() as conn:
            if _current(conn):
                return
        with _mysql_lock(self.engine), self.write_engine.begin() as conn:
            _lock_schema(conn)
            _create_or_upgrade(conn, self.display_url, create)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection whose statements see one consistent snapshot."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction, retrying on lock contention and unique races."""

        def attempt() -> T:
            with self.session() as session:
                return work(session)

        return retrying(attempt, f"writing to {self.display_url}")

    def reading(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a `read()` connection, retrying when SQLite is briefly busy."""

        def attempt() -> T:
            with self.read() as conn:
                return work(conn)

        return retrying(attempt, f"reading {self.display_url}")

    def dispose(self) -> None:
        """Close pooled connections (call before forking workers)."""
        self.engine.dispose()


@contextmanager
def open_store(db: Store | str | None = None, *, create: bool = False) -> Iterator[Store]:
    """`db` itself when it is a Store, else a Store opened on it and disposed afterwards."""
    if isinstance(db, Store):
        yield db
        return
    store = Store(db, create=create)
    try:
        yield store
    finally:
        store.dispose()


def _sqlite_file_exists(database: str | None) -> bool:
    return not database or database == ":memory:" or Path(database).exists()


def _current(conn: Connection) -> bool:
    """True when the schema is complete and stamped with this version (the fast path)."""
    names = set(inspect(conn).get_table_names())
    if not set(Base.metadata.tables) <= names:
        return False
    return read_version(conn) == str(SCHEMA_VERSION)


def _lock_schema(conn: Connection) -> None:
    """Serialise schema creation and migration between processes (SQLite: BEGIN IMMEDIATE did)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


@contextmanager
def _mysql_lock(engine: Engine) -> Iterator[None]:
    """On MySQL/MariaDB (where DDL commits at once) a named lock held until the stamp is committed."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT GET_LOCK(:name, :timeout)"), {"name": "nnsearch_schema", "timeout": BUSY_TIMEOUT_S})
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": "nnsearch_schema"})


def _create_or_upgrade(conn: Connection, where: str, create: bool) -> None:
    tables = set(inspect(conn).get_table_names())
    if "schema_info" in tables:
        check_version(conn, where)
        Base.metadata.create_all(conn)
        return
    ours = tables & set(Base.metadata.tables)
    if ours:
        raise StoreError(
            f"the database at {where} holds tables {sorted(ours)} "
            "but no nnsearch schema stamp; it was not written by nnsearch"
        )
    if not create:
        raise StoreError(f"no nnsearch store at {where}")
    Base.metadata.create_all(conn)
    write_version(conn, SCHEMA_VERSION)


def check_version(conn: Connection, where: str) -> None:
    """Raise on a newer or unreadable stamp; run the migrations for an older one."""
    found = read_version(conn)
    if found is None or not found.isdigit():
        raise StoreError(f"the store at {where} has an unknown schema version {found!r}")
    if int(found) > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {where} was written by a newer nnsearch (schema {found}, "
            f"this version understands up to {SCHEMA_VERSION}); upgrade nnsearch"
        )
    if int(found) < SCHEMA_VERSION:
        migrate(conn, int(found), where)


def retrying(attempt: Callable[[], T], what: str, attempts: int = 8) -> T:
    """`attempt()`, run again with backoff after lock time-outs, deadlocks and unique races.

    SQLite can answer "database is locked" without waiting, e.g. to a connection
    that opens while another process's last connection cleans up the WAL file.
    """
    for number in range(attempts):
        try:
            return attempt()
        except (OperationalError, IntegrityError) as exc:
            if number == attempts - 1 or not _retryable(exc):
                raise StoreError(f"{what} failed: {' '.join(str(exc.orig).split())}") from None
            time.sleep(min(0.05 * 2**number, 2.0))
    raise AssertionError("unreachable")


def _retryable(exc: SQLAlchemyError) -> bool:
    text_ = str(getattr(exc, "orig", exc)).lower()
    if isinstance(exc, IntegrityError):
        return any(word in text_ for word in ("unique", "duplicate"))
    return any(word in text_ for word in ("locked", "busy", "deadlock", "could not serialize", "lock wait"))
