"""The measurement queue in the store: enqueue, claim under a lease, renew, complete, fail, count, wait.

Every state change is one transaction. A claim is a compare-and-swap: the job
moves to `running` only if it is still `queued`, or `running` with a lease
that ran out (on PostgreSQL the candidate row is also locked with SKIP LOCKED,
so agents do not queue up behind each other). The lease is a token plus an
expiry in seconds on the store's clock (`store_clock`: the database server's
clock on PostgreSQL and MySQL, so agents on machines whose clocks differ agree);
only the holder of the current token can renew or finish the job, so a job
whose lease lapsed and was claimed by another agent is never finished twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from nnsearch.errors import LatencyError
from nnsearch.latency.probes import OpKey
from nnsearch.store.dialect import insert_ignore
from nnsearch.store.engine import Store
from nnsearch.store.schema import MeasureAgent, MeasureJob, utcnow
from nnsearch.store.stat import LatencyStat

STATES = ("queued", "running", "done", "failed")
#: Priority of first timings (probes a study waits for, whole models); re-measurements come after.
FIRST, RECHECK = 0, 1


def store_clock(conn: Connection) -> float:
    """Seconds since the epoch on the store's clock (the server's on PostgreSQL/MySQL, this host's on SQLite)."""
    if conn.dialect.name == "postgresql":
        return float(conn.scalar(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")))
    if conn.dialect.name in ("mysql", "mariadb"):
        return float(conn.scalar(text("SELECT UNIX_TIMESTAMP(NOW(6))")))
    return time.time()


def probe_target(key: OpKey, threads: int, precision: str) -> str:
    """The `measure_job.target` of a one-op probe."""
    return (
        f"probe:{precision}:{threads}t:{key.op}:{key.in_h}x{key.in_w}x{key.in_c}:{key.out_c}:"
        f"k{key.kernel}s{key.stride}:{key.activation}"
    )


def model_target(nn: str, height: int, width: int, threads: int, precision: str) -> str:
    """The `measure_job.target` of a whole model."""
    return f"model:{precision}:{threads}t:{nn}:{height}x{width}"


@dataclass(frozen=True)
class Claim:
    """A job an agent holds: what to time and the lease token that proves it holds it."""

    id: int
    token: str
    device: str
    kind: str
    target: str
    round: int
    nn: str | None
    key: OpKey | None
    precision: str
    threads: int
    height: int
    width: int
    payload: bytes | None
    attempts: int


@dataclass(frozen=True)
class RunnerIdentity:
    """How a runner times: runtime name and version, delegate library and its options."""

    runtime: str
    runtime_version: str
    delegate: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def options_json(self) -> str | None:
        return json.dumps(dict(self.options), sort_keys=True) if self.options else None


def enqueue_probes(
    session: Session,
    device: str,
    keys: Iterable[OpKey],
    threads: int,
    precision: str,
    *,
    study: str | None = None,
    recheck: bool = False,
) -> int:
    """Queue one probe job per key (first timings, or with `recheck` a new round of each); returns how many."""
    keys = sorted(set(keys))
    if not keys:
        return 0
    targets = {probe_target(k, threads, precision): k for k in keys}
    rounds = {t: 0 for t in targets}
    if recheck:
        busy = set(
            session.scalars(
                select(MeasureJob.target).where(
                    MeasureJob.device == device,
                    MeasureJob.target.in_(list(targets)),
                    MeasureJob.state.in_(("queued", "running")),
                )
            )
        )
        last = dict(
            session.execute(
                select(MeasureJob.target, func.max(MeasureJob.round))
                .where(MeasureJob.device == device, MeasureJob.target.in_(list(targets)))
                .group_by(MeasureJob.target)
            ).all()
        )
        rounds = {t: last.get(t, -1) + 1 for t in targets if t not in busy}
    rows = [
        dict(
            device=device,
            kind="probe",
            target=t,
            round=r,
            priority=RECHECK if recheck else FIRST,
            op_key=json.dumps(list(targets[t])),
            precision=precision,
            threads=int(threads),
            height=targets[t].in_h,
            width=targets[t].in_w,
            study=study,
            state="queued",
            attempts=0,
            created_at=utcnow(),
        )
        for t, r in rounds.items()
    ]
    insert_ignore(session, MeasureJob, rows)
    return len(rows)


def enqueue_model(
    store: Store,
    device: str,
    nn: str,
    tflite: bytes,
    height: int,
    width: int,
    threads: int,
    precision: str,
    *,
    study: str | None = None,
    predicted_ms: float | None = None,
) -> int:
    """Queue the whole-model timing of `nn` (unless one is queued, running or done); returns the job id."""
    target = model_target(nn, height, width, threads, precision)

    def work(session: Session) -> int:
        found = session.execute(
            select(MeasureJob.id, MeasureJob.state)
            .where(MeasureJob.device == device, MeasureJob.target == target)
            .order_by(MeasureJob.round.desc())
        ).first()
        if found is not None and found.state != "failed":
            return int(found.id)
        round_ = (
            0
            if found is None
            else int(
                session.scalar(
                    select(func.max(MeasureJob.round)).where(MeasureJob.device == device, MeasureJob.target == target)
                )
                or 0
            )
            + 1
        )
        job = MeasureJob(
            device=device,
            kind="model",
            target=target,
            round=round_,
            priority=FIRST,
            nn=nn,
            precision=precision,
            threads=int(threads),
            height=int(height),
            width=int(width),
            payload=tflite,
            study=study,
            predicted_ms=predicted_ms,
            state="queued",
            attempts=0,
        )
        session.add(job)
        session.flush()
        return int(job.id)

    return store.write(work)


def _claimable(device: str, now: float):  # -> SQL condition
    return and_(
        MeasureJob.device == device,
        or_(MeasureJob.state == "queued", and_(MeasureJob.state == "running", MeasureJob.lease_expires < now)),
    )


def claim(store: Store, device: str, agent: str, lease_s: float) -> Claim | None:
    """Take the next job of `device` (queued, or running with a lapsed lease) under a new lease; None if none."""

    def work(session: Session) -> Claim | None:
        now = store_clock(session.connection())
        query = (
            select(MeasureJob.id).where(_claimable(device, now)).order_by(MeasureJob.priority, MeasureJob.id).limit(1)
        )
        if store.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        job_id = session.scalar(query)
        if job_id is None:
            return None
        token = uuid.uuid4().hex
        taken: Any = session.execute(
            update(MeasureJob)
            .where(MeasureJob.id == job_id, _claimable(device, now))
            .values(
                state="running",
                agent=agent,
                lease_token=token,
                lease_expires=now + lease_s,
                attempts=MeasureJob.attempts + 1,
                started_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            return None
        row = session.execute(select(MeasureJob).where(MeasureJob.id == job_id)).scalar_one()
        key = OpKey(*json.loads(row.op_key)) if row.op_key else None
        return Claim(
            row.id,
            token,
            row.device,
            row.kind,
            row.target,
            row.round,
            row.nn,
            key,
            row.precision,
            row.threads,
            row.height,
            row.width,
            row.payload,
            row.attempts,
        )

    for _ in range(5):  # another agent won the race for that row: try the next one
        found = store.write(work)
        if found is not None or not _any_claimable(store, device):
            return found
    return None


def _any_claimable(store: Store, device: str) -> bool:
    def work(conn: Connection) -> bool:
        now = store_clock(conn)
        return (conn.scalar(select(func.count()).select_from(MeasureJob).where(_claimable(device, now))) or 0) > 0

    return store.reading(work)


def renew(store: Store, job: Claim, lease_s: float) -> bool:
    """Extend the lease of a held job; False when the agent no longer holds it."""

    def work(session: Session) -> bool:
        now = store_clock(session.connection())
        done: Any = session.execute(
            update(MeasureJob)
            .where(  # a CursorResult: rowcount
                MeasureJob.id == job.id,
                MeasureJob.lease_token == job.token,
                MeasureJob.state == "running",
            )
            .values(lease_expires=now + lease_s)
            .execution_options(synchronize_session=False)
        )
        return done.rowcount == 1

    return store.write(work)


#: What a finished job writes besides its own row (lookup-table entry, latency_run row); returns a note.
Landing = Callable[[Session, MeasureJob, LatencyStat, RunnerIdentity], str | None]


def complete(store: Store, job: Claim, stat: LatencyStat, identity: RunnerIdentity, land: Landing) -> bool:
    """Record a held job's result and land it, in one transaction; False (nothing written) if the lease was lost."""

    def work(session: Session) -> bool:
        row = session.execute(
            select(MeasureJob)
            .where(
                MeasureJob.id == job.id,
                MeasureJob.lease_token == job.token,
                MeasureJob.state == "running",
            )
            .with_for_update()
        ).scalar_one_or_none()
        if row is None:
            return False
        row.state, row.finished_at, row.lease_token = "done", utcnow(), None
        _describe(row, identity)
        row.median_ms, row.min_ms, row.max_ms, row.runs = stat.median_ms, stat.min_ms, stat.max_ms, stat.runs
        row.message = land(session, row, stat, identity)
        return True

    return store.write(work)


def fail(store: Store, job: Claim, message: str, identity: RunnerIdentity | None = None) -> bool:
    """Record that the device cannot run a held job (with the runtime's message); False if the lease was lost."""

    def work(session: Session) -> bool:
        row = session.execute(
            select(MeasureJob).where(
                MeasureJob.id == job.id,
                MeasureJob.lease_token == job.token,
                MeasureJob.state == "running",
            )
        ).scalar_one_or_none()
        if row is None:
            return False
        row.state, row.finished_at, row.lease_token, row.message = "failed", utcnow(), None, message
        if identity is not None:
            _describe(row, identity)
        return True

    return store.write(work)


def release(store: Store, job: Claim) -> None:
    """Give a held job back to the queue at once (an agent that stops cleanly)."""
    store.write(
        lambda session: session.execute(
            update(MeasureJob)
            .where(
                MeasureJob.id == job.id,
                MeasureJob.lease_token == job.token,
                MeasureJob.state == "running",
            )
            .values(state="queued", lease_token=None, lease_expires=None, agent=None)
            .execution_options(synchronize_session=False)
        )
    )


def _describe(row: MeasureJob, identity: RunnerIdentity) -> None:
    row.runtime, row.runtime_version = identity.runtime, identity.runtime_version
    row.delegate, row.options = identity.delegate, identity.options_json()


def job_counts(store: Store, device: str | None = None) -> dict[str, dict[str, int]]:
    """{device: {state: count}} over every state (zeros included), for one device or all."""
    query = select(MeasureJob.device, MeasureJob.state, func.count()).group_by(MeasureJob.device, MeasureJob.state)
    if device is not None:
        query = query.where(MeasureJob.device == device)
    counts: dict[str, dict[str, int]] = {}
    for name, state, count in store.reading(lambda conn: conn.execute(query).all()):
        counts.setdefault(name, dict.fromkeys(STATES, 0))[state] = int(count)
    return counts


@dataclass(frozen=True)
class JobState:
    """Where a job stands, and its result once done."""

    id: int
    state: str
    message: str | None
    stat: LatencyStat | None
    runtime: str | None
    runtime_version: str | None


def job_states(store: Store, ids: Sequence[int]) -> dict[int, JobState]:
    """The current state of each job in `ids`."""
    query = select(
        MeasureJob.id,
        MeasureJob.state,
        MeasureJob.message,
        MeasureJob.median_ms,
        MeasureJob.min_ms,
        MeasureJob.max_ms,
        MeasureJob.runs,
        MeasureJob.runtime,
        MeasureJob.runtime_version,
    )
    found: dict[int, JobState] = {}
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]

        def read(conn: Connection, chunk: list[int] = chunk) -> Sequence[Any]:
            return conn.execute(query.where(MeasureJob.id.in_(chunk))).all()

        for row in store.reading(read):
            stat = (
                LatencyStat(median_ms=row.median_ms, min_ms=row.min_ms, max_ms=row.max_ms, runs=row.runs or 1)
                if row.state == "done"
                else None
            )
            found[row.id] = JobState(row.id, row.state, row.message, stat, row.runtime, row.runtime_version)
    return found


def wait_for(
    store: Store,
    ids: Sequence[int],
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, JobState]:
    """Poll until every job in `ids` is done or failed (or `timeout_s` passed); their states."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        states = job_states(store, ids)
        finished = sum(s.state in ("done", "failed") for s in states.values())
        if progress is not None:
            progress(finished, len(ids))
        if finished == len(set(ids)) or (deadline is not None and time.monotonic() >= deadline):
            return states
        time.sleep(poll_s)


def serving_agents(store: Store, device: str) -> list[str]:
    """Names of the agents that registered for `device` in this store (running or stopped)."""
    query = select(MeasureAgent.name).where(MeasureAgent.device == device).order_by(MeasureAgent.name)
    return list(store.reading(lambda conn: conn.scalars(query).all()))


def require_agents(store: Store, device: str) -> None:
    """LatencyError unless some agent serves `device`."""
    if not serving_agents(store, device):
        raise LatencyError(
            f"no measurement agent serves device '{device}' in {store.display_url}; start one with "
            f"`nnsearch agent --device {device} --db URL` on the machine that has the device"
        )
