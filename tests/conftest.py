"""Shared fixtures: a fresh store on every engine.

`store_url` / `store` are parametrised over SQLite (a file in tmp_path) and
PostgreSQL (a fresh schema in a database created for the test session on the
server at $NNSEARCH_TEST_PG, default postgresql+psycopg://postgres@127.0.0.1:5432/test,
dropped at the end). When that server is unreachable the PostgreSQL cases are
skipped, or fail when $CI is set. NNSEARCH_TEST_ENGINES=sqlite,postgresql,mysql
adds MySQL/MariaDB (a fresh database per test at $NNSEARCH_TEST_MYSQL; needs pymysql).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from nnsearch.store.engine import Store

PG_URL = os.environ.get("NNSEARCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("NNSEARCH_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
#: Engines the store tests run on; add "mysql" (needs pymysql) to also test MySQL/MariaDB.
ENGINES = tuple(os.environ.get("NNSEARCH_TEST_ENGINES", "sqlite,postgresql").split(","))


def _admin(url: URL):  # -> Engine in autocommit mode
    return create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def _unusable(server: URL, exc: Exception, setting: str) -> None:
    """Skip (fail under CI) when a database server cannot be used."""
    message = (
        f"{server.get_backend_name()} at {server.render_as_string(hide_password=True)} is not usable "
        f"({str(exc).splitlines()[0]}); set {setting} to a server URL"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def _scratch_database(server_url: str, quote: str, drop_suffix: str, setting: str) -> Iterator[URL]:
    """Create a uniquely named database on a server, yield its URL, drop it afterwards."""
    server = make_url(server_url)
    name = f"nnsearch_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(server)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    except Exception as exc:  # unreachable server, missing driver, refused login
        admin.dispose()
        _unusable(server, exc, setting)
    try:
        yield server.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_suffix}"))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[URL]:
    """A database of its own for this test session, dropped afterwards."""
    with _scratch_database(PG_URL, '"', " WITH (FORCE)", "NNSEARCH_TEST_PG") as url:
        yield url


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL on a fresh, empty schema of the session's PostgreSQL database."""
    database: URL = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin(database)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield database.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A URL on a fresh MySQL/MariaDB database, dropped afterwards."""
    with _scratch_database(MYSQL_URL, "`", "", "NNSEARCH_TEST_MYSQL") as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of a fresh, empty database on each engine (no store created yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue({"postgresql": "pg_url", "mysql": "mysql_url"}[request.param])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A fresh store on each engine."""
    opened = Store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


# ---- the tiny study on the command line ------------------------------------------------------------

#: `nnsearch search` flags of the tiny study the subprocess tests run (a 20-step teacher only exercises the pipeline).
TINY_STUDY_FLAGS = (  # noqa: SIM905 - one line reads as the command line it is
    "--space tiny --steps 6 --epochs 2 --batch 2 --crops 32 --teacher-steps 20 --teacher-margin=-inf "
    "--max-side 64 --no-early-stop"
).split()


def tiny_study_flags(resolution: str = "64x96", *extra: str) -> list[str]:
    """The tiny study's flags at a latency `resolution` (HxW), then `extra` flags."""
    return [*TINY_STUDY_FLAGS, "--resolution", resolution, *extra]


# ---- records for store tests ----------------------------------------------------------------------

ARCH_FIELDS = [  # small, distinct students
    dict(widths=(8, 16), blocks=(1, 1), skips=("concat",)),
    dict(widths=(8, 16), blocks=(1, 0), skips=("add",)),
    dict(widths=(8, 16, 24), blocks=(1, 0, 1), skips=("concat", "add")),
    dict(widths=(12, 24), blocks=(0, 1), skips=("concat",)),
]


def model_record(
    arch: int = 0,
    prm: dict | None = None,
    *,
    epochs: int = 2,
    dataset: str = "builtin",
    latency_ms: float | None = 5.0,
    weights: bytes | None = b"w",
    **changes,
):  # -> ModelRecord
    """A small but complete ModelRecord for architecture number `arch` of `ARCH_FIELDS`."""
    import json
    from datetime import datetime

    from nnsearch.model.arch import Arch
    from nnsearch.store.record import EpochRecord, LatencyRecord, ModelRecord

    spec = Arch(**ARCH_FIELDS[arch])
    prm = {"lr": 1e-3, "batch": 4} if prm is None else prm
    latencies = (
        []
        if latency_ms is None
        else [
            LatencyRecord(
                device="host-cpu",
                runtime="litert",
                runtime_version="2.3.0",
                threads=1,
                height=64,
                width=96,
                kind="measured",
                median_ms=latency_ms,
                min_ms=latency_ms * 0.9,
                max_ms=latency_ms * 1.2,
                runs=3,
                created_at=datetime(2026, 1, 1, 12, 0, arch, 123456),
            )
        ]
    )
    fields = dict(
        nn=spec.name,
        code=spec.model_code(),
        arch_json=json.dumps(spec.to_dict(), sort_keys=True),
        prm=prm,
        dataset=dataset,
        transform="crops-32",
        transform_code="# crop schedule 32\n",
        params=1000 + arch,
        macs=2.5e6 * (arch + 1),
        macs_hw=(64, 96),
        depth=6,
        model_size_bytes=4000 + 4 * arch,
        epochs=[
            EpochRecord(
                epoch=e,
                psnr=28.0 + e + arch / 7,
                ssim=0.8 + e / 100,
                duration_ns=10**9 * (e + 1),
                train_loss=0.1 / (e + 1),
            )
            for e in range(epochs)
        ],
        latencies=latencies,
        weights=weights,
    )
    fields.update(changes)
    return ModelRecord(**fields)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Iterator[None]:
    """Teachers and teacher outputs trained by tests go to a temporary cache, not the user's."""
    saved = os.environ.get("NNSEARCH_CACHE")
    os.environ["NNSEARCH_CACHE"] = str(tmp_path_factory.mktemp("nnsearch-cache"))
    yield
    if saved is None:
        os.environ.pop("NNSEARCH_CACHE", None)
    else:
        os.environ["NNSEARCH_CACHE"] = saved


class RunsCode:
    """A crafted object: unpickling it calls Path.touch(marker), as a file that runs code on load would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
