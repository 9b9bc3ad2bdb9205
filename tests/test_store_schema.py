"""Store opening: schema creation, foreign keys on every engine, version stamp and migrations."""

from __future__ import annotations

import pytest
from conftest import model_record
from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)

from nnsearch.errors import StoreError
from nnsearch.store import versioning as migrate
from nnsearch.store.engine import Store
from nnsearch.store.recording import record_trial, write_model
from nnsearch.store.schema import SCHEMA_VERSION, Base, SchemaInfo, Stat
from nnsearch.store.versioning import read_version, write_version


def stamp(store: Store, value: str | None) -> None:
    """Overwrite (or, with None, delete) the schema version stamp."""
    table = SchemaInfo.__table__
    where = table.c.key == "schema_version"
    with store.write_engine.begin() as conn:
        conn.execute(table.delete().where(where) if value is None else table.update().where(where).values(value=value))


def test_new_store_has_every_table_and_the_stamp(store):
    names = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= names
    with store.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION)
    Store(store.url, create=False).dispose()  # reopening an existing store


def test_stat_key_serves_the_query_order(store):
    unique = {u["name"]: u["column_names"] for u in inspect(store.engine).get_unique_constraints("stat")}
    assert unique["uq_stat_key"] == ["task", "dataset", "metric", "nn", "epoch", "transform", "prm", "run", "rung"]


@pytest.mark.parametrize("column, value", [("nn", "NoSuchNet"), ("prm", "0" * 32), ("metric", "nope")])
def test_foreign_keys_are_enforced(store, column, value):
    record_trial(store, "s", 0, model_record())
    with store.read() as conn:
        row = dict(conn.execute(select(Stat)).mappings().first())
    row.pop("id")
    row.update({column: value, "epoch": 99})

    def work(session):
        session.execute(Stat.__table__.insert(), [row])

    with pytest.raises(StoreError, match="(?i)foreign key"):
        store.write(work)
    with store.read() as conn:
        assert conn.scalar(select(func.count()).select_from(Stat).where(Stat.epoch == 99)) == 0


@pytest.mark.parametrize(
    "value, message",
    [
        (str(SCHEMA_VERSION + 1), "newer nnsearch"),
        ("banana", "unknown schema version 'banana'"),
        (None, "unknown schema version None"),
    ],
)
def test_bad_version_stamp_is_a_clear_error(store, value, message):
    stamp(store, value)
    with pytest.raises(StoreError, match=message):
        Store(store.url)


def test_older_store_runs_registered_migrations(store, monkeypatch):
    calls = []

    def fake_step(conn):
        calls.append(read_version(conn))
        conn.execute(text("CREATE TABLE migrated_marker (x INTEGER)"))

    monkeypatch.setitem(migrate.MIGRATIONS, SCHEMA_VERSION - 1, fake_step)
    stamp(store, str(SCHEMA_VERSION - 1))
    Store(store.url).dispose()
    assert calls == [str(SCHEMA_VERSION - 1)]
    assert "migrated_marker" in inspect(store.engine).get_table_names()
    with store.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION)
    Store(store.url).dispose()  # already current: the step does not run again
    assert len(calls) == 1


def test_failing_migration_changes_nothing(store, monkeypatch):
    if store.dialect in ("mysql", "mariadb"):
        pytest.skip("MySQL/MariaDB commit DDL at once: a failed migration can leave its tables")

    def broken_step(conn):
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise StoreError("step failed")

    monkeypatch.setitem(migrate.MIGRATIONS, SCHEMA_VERSION - 1, broken_step)
    stamp(store, str(SCHEMA_VERSION - 1))
    with pytest.raises(StoreError, match="step failed"):
        Store(store.url)
    assert "half_done" not in inspect(store.engine).get_table_names()
    with store.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION - 1)


def test_older_store_without_a_migration_is_an_error(store, monkeypatch):
    monkeypatch.delitem(migrate.MIGRATIONS, SCHEMA_VERSION - 1, raising=False)
    stamp(store, str(SCHEMA_VERSION - 1))
    with pytest.raises(StoreError, match=f"no migration from schema {SCHEMA_VERSION - 1}"):
        Store(store.url)


def test_foreign_tables_without_stamp_are_refused(store_url):
    opened = Store(store_url)
    with opened.write_engine.begin() as conn:
        conn.execute(text("DROP TABLE schema_info"))
    opened.dispose()
    with pytest.raises(StoreError, match="not written by nnsearch"):
        Store(store_url)


def test_missing_store_is_not_created_when_asked_not_to(tmp_path, store_url):
    with pytest.raises(StoreError, match="no nnsearch store"):
        Store(store_url, create=False)
    assert not (tmp_path / "store.db").exists()


def test_bad_urls_are_clear_errors():
    with pytest.raises(StoreError, match="unsupported database"):
        Store("oracle://user@host/db")
    with pytest.raises(StoreError, match="not valid"):
        Store("postgresql+psycopg://user@host:notaport/db")


def test_write_version_inserts_a_missing_stamp(store):
    stamp(store, None)
    with store.write_engine.begin() as conn:
        write_version(conn, SCHEMA_VERSION)
    Store(store.url).dispose()


def test_session_is_one_transaction(store):
    with pytest.raises(RuntimeError), store.session() as session:
        write_model(session, model_record())
        raise RuntimeError("abort")
    with store.read() as conn:
        assert conn.scalar(select(func.count()).select_from(Stat)) == 0


def test_a_schema_1_store_gains_precision_and_keeps_its_latency_rows(store):
    record_trial(store, "s", 0, model_record())
    with store.read() as conn:
        before = conn.execute(text("SELECT nn, device, median_ms FROM latency_run ORDER BY id")).all()
    assert before, "the fixture record holds latency rows"
    with store.write_engine.begin() as conn:  # turn both tables back into their schema-1 shape
        for name in ("latency_run", "latency_lut"):
            keep = ", ".join(c["name"] for c in inspect(conn).get_columns(name) if c["name"] != "precision")
            conn.execute(text(f"CREATE TABLE {name}_v1 AS SELECT {keep} FROM {name}"))
            conn.execute(text(f"DROP TABLE {name}"))
            conn.execute(text(f"ALTER TABLE {name}_v1 RENAME TO {name}"))
    stamp(store, "1")
    reopened = Store(store.url)
    with reopened.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION)
        after = conn.execute(text("SELECT nn, device, median_ms, precision FROM latency_run ORDER BY id")).all()
    assert [tuple(r[:3]) for r in after] == [tuple(r) for r in before]
    assert {r[3] for r in after} == {"fp32"}
    record_trial(reopened, "s", 1, model_record(arch=1))  # new rows get new ids after the copied ones
    reopened.dispose()


def _schema_2_stat(metadata: MetaData) -> Table:
    """The `stat` table as schema 2 defined it: no `run`, key without it, duration NOT NULL."""
    return Table(
        "stat",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("task", String(64), nullable=False),
        Column("dataset", String(128), nullable=False),
        Column("metric", ForeignKey("metric.name", ondelete="RESTRICT"), nullable=False),
        Column("nn", ForeignKey("nn.name", ondelete="RESTRICT"), nullable=False, index=True),
        Column("transform", ForeignKey("transform.name", ondelete="RESTRICT"), nullable=False),
        Column("prm", ForeignKey("prm_set.uid", ondelete="RESTRICT"), nullable=False, index=True),
        Column("epoch", Integer, nullable=False),
        Column("accuracy", Double, nullable=False),
        Column("duration", BigInteger, nullable=False),
        UniqueConstraint("task", "dataset", "metric", "nn", "epoch", "transform", "prm", name="uq_stat_key"),
    )


def test_a_schema_2_store_gains_stat_runs_and_keeps_stats_and_train_stats(store):
    record_trial(store, "s", 0, model_record(epochs=3))
    read_stats = "SELECT id, nn, metric, epoch, accuracy, duration FROM stat ORDER BY id"
    read_train = "SELECT stat_id, train_loss, grad_norm FROM train_stat ORDER BY stat_id"
    with store.read() as conn:
        stats, train = conn.execute(text(read_stats)).all(), conn.execute(text(read_train)).all()
    assert stats and train, "the fixture record holds stat and train_stat rows"
    old = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name != "stat":
            table.to_metadata(old)
    _schema_2_stat(old)
    with store.write_engine.begin() as conn:  # turn stat back into its schema-2 shape, keeping every row
        stat_rows = [dict(r) for r in conn.execute(text("SELECT * FROM stat")).mappings()]
        train_rows = [dict(r) for r in conn.execute(text("SELECT * FROM train_stat")).mappings()]
        conn.execute(text("DROP TABLE train_stat"))
        conn.execute(text("DROP TABLE stat"))
        old.tables["stat"].create(conn)
        old.tables["train_stat"].create(conn)
        conn.execute(
            old.tables["stat"].insert(), [{k: v for k, v in r.items() if k not in ("run", "rung")} for r in stat_rows]
        )
        conn.execute(old.tables["train_stat"].insert(), train_rows)
    stamp(store, "2")
    with store.read() as conn:
        assert "run" not in {c["name"] for c in inspect(conn).get_columns("stat")}
    reopened = Store(store.url)
    with reopened.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION)
        assert conn.execute(text(read_stats)).all() == stats
        assert conn.execute(text(read_train)).all() == train
        assert {r[0] for r in conn.execute(text("SELECT DISTINCT run FROM stat"))} == {0}
    # the new key takes a repeated training of the same hyperparameters and an unknown duration
    first = {k: v for k, v in stat_rows[0].items() if k not in ("id", "run", "rung")}
    with reopened.write_engine.begin() as conn:
        conn.execute(Stat.__table__.insert().values(**{**first, "run": 1, "duration": None}))
    with reopened.read() as conn:
        assert conn.scalar(select(func.count()).select_from(Stat)) == len(stats) + 1
    record_trial(reopened, "s", 1, model_record(arch=1))  # new rows get new ids after the copied ones
    reopened.dispose()
