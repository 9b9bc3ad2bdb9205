"""`check_integrity`: find what a crash, a foreign writer or a bad import could leave behind.

Checks: the SQLite file itself (`PRAGMA quick_check`), the schema stamp, every
foreign key (rows pointing to a missing parent: stats without their nn, trial
links pointing nowhere, ...; possible in stores written with foreign keys off),
code rows whose `id` is not the md5 of their code, weights whose sha256 does
not match, and finished trials that have no stat rows.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import and_, exists, func, select, text
from sqlalchemy.engine import Connection

from nnsearch.store.engine import Store, open_store
from nnsearch.store.hashing import md5
from nnsearch.store.schema import NN, SCHEMA_VERSION, Base, Metric, Stat, Transform, TrialLink, Weights
from nnsearch.store.versioning import read_version

_BATCH = 200


def check_integrity(db: Store | str | None = None) -> list[str]:
    """One line per problem found; an empty list means the store is sound."""
    checks = (_file_check, _version_check, _foreign_keys, _code_ids, _weights, _finished_trials)
    with open_store(db) as store:
        return store.reading(lambda conn: [problem for check in checks for problem in check(conn)])


def _file_check(conn: Connection) -> list[str]:
    if conn.dialect.name != "sqlite":
        return []
    result = [row[0] for row in conn.execute(text("PRAGMA quick_check"))]
    return [] if result == ["ok"] else [f"sqlite file: {line}" for line in result]


def _version_check(conn: Connection) -> list[str]:
    found = read_version(conn)
    return [] if found == str(SCHEMA_VERSION) else [f"schema_info: version stamp {found!r}, expected {SCHEMA_VERSION}"]


def _foreign_keys(conn: Connection) -> list[str]:
    problems = []
    for table in Base.metadata.sorted_tables:
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            child, parent = fk.parent, fk.column
            orphan = and_(child.is_not(None), ~exists().where(parent == child))
            count, example = conn.execute(select(func.count(), func.min(child)).where(orphan)).one()
            if count:
                problems.append(
                    f"{table.name}.{child.name}: {count} row(s) name a missing "
                    f"{parent.table.name}.{parent.name} (e.g. {example!r})"
                )
    return problems


def _code_ids(conn: Connection) -> list[str]:
    problems = []
    for model in (NN, Metric, Transform):
        bad = [
            name
            for name, code, id_ in conn.execute(select(model.name, model.code, model.id)).yield_per(_BATCH)
            if md5(code) != id_
        ]
        if bad:
            problems.append(
                f"{model.__tablename__}: {len(bad)} row(s) whose id is not the md5 of their code (e.g. {bad[0]!r})"
            )
    return problems


def _weights(conn: Connection) -> list[str]:
    bad = [
        f"{nn}/{prm}"
        for nn, prm, state, sha in conn.execute(
            select(Weights.nn, Weights.prm, Weights.state, Weights.sha256)
        ).yield_per(_BATCH)
        if hashlib.sha256(state).hexdigest() != sha
    ]
    return [f"weights: {len(bad)} row(s) whose sha256 does not match their bytes (e.g. {bad[0]})"] if bad else []


def _finished_trials(conn: Connection) -> list[str]:
    has_stats = exists().where(
        Stat.nn == TrialLink.nn,
        Stat.prm == TrialLink.prm,
        Stat.task == TrialLink.task,
        Stat.dataset == TrialLink.dataset,
    )
    rows = conn.execute(
        select(TrialLink.study, TrialLink.trial_number)
        .where(TrialLink.state == "complete", ~has_stats)
        .order_by(TrialLink.study, TrialLink.trial_number)
    ).all()
    if not rows:
        return []
    return [
        f"trial_link: {len(rows)} complete trial(s) without stat rows (e.g. study {rows[0][0]!r} trial {rows[0][1]})"
    ]
