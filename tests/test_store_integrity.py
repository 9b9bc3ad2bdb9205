"""check_integrity finds orphans, bad code ids, bad weights and finished trials without stats."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from conftest import model_record
from sqlalchemy import text

from nnsearch.store.integrity import check_integrity
from nnsearch.store.recording import record_trial


@contextmanager
def foreign_keys_off(store):
    """A write connection that may break foreign keys (as a careless foreign writer could)."""
    with store.engine.connect() as conn:
        sqlite = conn.connection.driver_connection if store.dialect == "sqlite" else None
        if sqlite is not None:  # outside any transaction, where the pragma takes effect
            sqlite.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            if store.dialect == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            elif sqlite is None:  # MySQL/MariaDB
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            yield conn
        if sqlite is not None:
            sqlite.execute("PRAGMA foreign_keys=ON")
        elif store.dialect != "postgresql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
            conn.commit()


def test_sound_store_has_no_problems(store):
    record_trial(store, "s", 0, model_record(0))
    record_trial(store, "s", 1, model_record(1, epochs=0), state="failed")
    assert check_integrity(store) == []
    assert check_integrity(store.url) == []


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("DELETE FROM nn", "stat.nn: 4 row(s) name a missing nn.name"),
        ("DELETE FROM prm_set", "stat.prm: 4 row(s) name a missing prm_set.uid"),
        ("UPDATE trial_link SET nn = 'Gone'", "trial_link.nn: 1 row(s) name a missing nn.name (e.g. 'Gone')"),
        ("DELETE FROM stat", "train_stat.stat_id: 2 row(s) name a missing stat.id"),
        ("UPDATE nn SET code = 'changed'", "nn: 1 row(s) whose id is not the md5 of their code"),
        ("UPDATE metric SET id = 'x' WHERE name = 'psnr'", "metric: 1 row(s) whose id is not the md5"),
        ("UPDATE weights SET sha256 = 'x'", "weights: 1 row(s) whose sha256 does not match"),
        ("UPDATE schema_info SET value = '0'", "schema_info: version stamp '0'"),
    ],
)
def test_problems_are_found(store, statement, expected):
    record_trial(store, "s", 0, model_record(0))
    with foreign_keys_off(store) as conn:
        conn.execute(text(statement))
    problems = check_integrity(store) if "schema_info" not in statement else _check_without_reopening(store)
    assert any(expected in p for p in problems), problems


def _check_without_reopening(store):
    from nnsearch.store.integrity import _version_check

    with store.read() as conn:
        return _version_check(conn)


def test_complete_trial_without_stats_is_reported(store):
    record_trial(store, "s", 7, model_record(0, epochs=0))
    assert check_integrity(store) == ["trial_link: 1 complete trial(s) without stat rows (e.g. study 's' trial 7)"]
