"""Opening a store: URL resolution, engine settings, schema creation and version check."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION, Base, SchemaInfo

PROJECT_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def default_db_path() -> Path:
    """`db/nnsearch.db` in the source checkout, else in the current directory."""
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / "db" / "nnsearch.db"


def resolve_db_url(db: str | None = None) -> str:
    """`db` argument, else $NNSEARCH_DB, else the default SQLite file.

    A plain file path is accepted and turned into a `sqlite:///` URL.
    """
    value = db or os.environ.get("NNSEARCH_DB") or str(default_db_path())
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    try:
        make_url(value)
    except ArgumentError as exc:
        raise StoreError(f"database URL {value!r} is not valid: {exc}") from None
    return value


def make_engine(url: str) -> Engine:
    """An engine with settings safe for several writers (WAL, busy timeout, FKs on SQLite)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


class Store:
    """An nnsearch store at a database URL; creates the schema on first use."""

    def __init__(self, db: str | None = None, *, create: bool = True) -> None:
        self.url = resolve_db_url(db)
        try:
            self.engine = make_engine(self.url)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self._prepare(create)
        except OperationalError as exc:
            raise StoreError(f"cannot open the store at {self.display_url}: {exc.orig}") from None
        except ModuleNotFoundError as exc:
            raise StoreError(f"the database driver for {self.display_url} is not installed ({exc.name})") from None

    @property
    def display_url(self) -> str:
        """The URL with any password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

    def _prepare(self, create: bool) -> None:
        tables = set(inspect(self.engine).get_table_names())
        if "schema_info" in tables:
            self._check_version()
            Base.metadata.create_all(self.engine)
            return
        ours = {t.name for t in Base.metadata.sorted_tables}
        if tables & ours:
            raise StoreError(
                f"the database at {self.display_url} holds tables {sorted(tables & ours)} "
                "but no nnsearch schema stamp; it was not written by nnsearch"
            )
        if not create:
            raise StoreError(f"no nnsearch store at {self.display_url}")
        Base.metadata.create_all(self.engine)
        with self.session() as session:
            session.merge(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))

    def _check_version(self) -> None:
        with self._sessions() as session:
            row = session.get(SchemaInfo, "schema_version")
        found = row.value if row else None
        if found is None or not found.isdigit():
            raise StoreError(f"the store at {self.display_url} has an unknown schema version {found!r}")
        if int(found) > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.display_url} was written by a newer nnsearch (schema {found}, "
                f"this version understands up to {SCHEMA_VERSION}); upgrade nnsearch"
            )
        if int(found) < SCHEMA_VERSION:
            from nnsearch.store.migrate import migrate

            migrate(self, int(found))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def write(self, work: Callable[[Session], T], attempts: int = 8) -> T:
        """Run `work` in one transaction, retrying on lock contention and unique races."""
        for attempt in range(attempts):
            try:
                with self.session() as session:
                    return work(session)
            except (OperationalError, IntegrityError) as exc:
                if attempt == attempts - 1 or not _retryable(exc):
                    raise StoreError(f"writing to {self.display_url} failed: {exc.orig}") from None
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def scalar_names(self, model: type, column: str = "name") -> list[str]:
        """All values of one column of a table (small helper for listings)."""
        with self._sessions() as session:
            return list(session.scalars(select(getattr(model, column))))

    def dispose(self) -> None:
        """Close pooled connections (call before forking workers)."""
        self.engine.dispose()


def _retryable(exc: SQLAlchemyError) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, IntegrityError) or any(
        word in text for word in ("locked", "busy", "deadlock", "could not serialize", "lock wait")
    )
