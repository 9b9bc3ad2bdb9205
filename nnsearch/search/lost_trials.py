"""Lost trials: RUNNING in Optuna, but their worker is gone (killed, crashed, or stopped before it beat).

A trial's worker records a heartbeat every few seconds (`nnsearch.search.heartbeat`);
a trial silent for the grace period is failed and Optuna's retry callback queues a
WAITING copy that the next claim runs. Optuna only fails trials that beat at least
once, so a worker killed between `study.ask()` (the sampler runs inside it) and its
first heartbeat would leave a RUNNING trial that every later run waits for. Here a
trial that never beat gets its first heartbeat from the first claimer that sees it
(under the study lock, on the database's clock), and is failed one grace period
later like any other silent trial.

`nnsearch check` lists lost trials (`find_lost_trials`) and `--repair` fails and
re-queues them at once (`repair_lost_trials`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy import delete, inspect, text

from nnsearch.search.heartbeat import heartbeat_interval
from nnsearch.search.quiet import quiet_optuna
from nnsearch.store.engine import Store
from nnsearch.store.locks import advisory_lock
from nnsearch.store.schema import TrialLink

#: RUNNING trials of one study that have never recorded a heartbeat.
_UNBEATEN = text(
    "SELECT t.trial_id FROM trials t WHERE t.study_id = :study AND t.state = 'RUNNING' "
    "AND NOT EXISTS (SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)"
)
#: Every RUNNING trial with its study, start time and last heartbeat (NULL: never beat).
_RUNNING = text(
    "SELECT s.study_name, t.trial_id, t.number, t.datetime_start, h.heartbeat "
    "FROM trials t JOIN studies s ON s.study_id = t.study_id "
    "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
    "WHERE t.state = 'RUNNING' ORDER BY s.study_name, t.number"
)


@dataclass(frozen=True)
class LostTrial:
    """A RUNNING trial without a live heartbeat."""

    study: str
    trial_id: int
    number: int
    silent_s: float  # seconds since its last heartbeat, or since it started when it never beat
    never_beat: bool

    def line(self) -> str:
        since = "started" if self.never_beat else "last heartbeat"
        return (
            f"optuna: study {self.study!r} trial {self.number} is RUNNING without a live heartbeat "
            f"({since} {self.silent_s:.0f} s ago); nnsearch check --repair (or the next run of the study, "
            f"after the grace period) fails it and queues a retry"
        )


def fail_lost_trials(study: optuna.Study, store: Store) -> list[int]:
    """Fail the study's trials silent for the grace period (Optuna queues their retries); call under the study lock.

    A RUNNING trial that never beat is given its first heartbeat now, so it is
    failed one grace period from now unless its worker is alive and beats.
    Returns the ids of the trials failed.
    """
    storage: Any = study._storage  # an RDBStorage: heartbeats and stale trials (BaseStorage does not say so)
    if not heartbeat_interval(study):
        return []
    with store.engine.connect() as conn:
        unbeaten = [row[0] for row in conn.execute(_UNBEATEN, {"study": study._study_id})]
    for trial_id in unbeaten:
        try:
            storage.record_heartbeat(trial_id)
        except Exception:  # its worker beat at the same moment: it has a heartbeat either way
            continue
    return fail_trials(study, store, storage._get_stale_trial_ids(study._study_id))


def fail_trials(study: optuna.Study, store: Store, trial_ids: list[int]) -> list[int]:
    """Mark these RUNNING trials failed, unlink their records and run the stale-trial callback (the retry).

    A worker killed after its record was committed but before Optuna was told
    left a trial link: it is removed, so that the retry (which records the same
    model and hyperparameters again) is the one trial the record counts.
    """
    storage: Any = study._storage  # an RDBStorage: heartbeats and stale trials (BaseStorage does not say so)
    failed = []
    with quiet_optuna():
        for trial_id in trial_ids:
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:  # another process finished or failed it
                continue
        frozen = [storage.get_trial(trial_id) for trial_id in failed]
        unlink_trials(store, study.study_name, [trial.number for trial in frozen])
        callback = storage.get_heartbeat_stale_trial_callback()
        if callback is not None:
            for trial in frozen:
                callback(study, trial)
    return failed


def unlink_trials(store: Store, study: str, numbers: list[int]) -> None:
    """Remove the trial links of these trials of `study` (the model records they point to stay)."""
    if numbers:
        store.write(
            lambda session: session.execute(
                delete(TrialLink).where(TrialLink.study == study, TrialLink.trial_number.in_(sorted(numbers)))
            )
        )


def find_lost_trials(store: Store, grace_s: float) -> list[LostTrial]:
    """RUNNING trials (all studies) whose last heartbeat is older than `grace_s`, or that never beat and
    started more than `grace_s` ago (by Optuna's start time, written with the worker's clock)."""
    if not inspect(store.engine).has_table("trial_heartbeats"):
        return []  # no Optuna study in this store
    with store.engine.connect() as conn:
        now_db = conn.execute(text("SELECT CURRENT_TIMESTAMP")).scalar()
        rows = conn.execute(_RUNNING).all()
    assert now_db is not None  # SELECT CURRENT_TIMESTAMP always has a row
    now_db = _naive(now_db)
    now_local = dt.datetime.now()
    lost = []
    for study, trial_id, number, started, beat in rows:
        silent = (now_db - _naive(beat)) if beat is not None else (now_local - _naive(started))
        if silent.total_seconds() > grace_s:
            lost.append(LostTrial(study, trial_id, number, silent.total_seconds(), beat is None))
    return lost


def repair_lost_trials(store: Store, lost: list[LostTrial], storage: optuna.storages.BaseStorage) -> list[LostTrial]:
    """Fail the lost trials and queue their retries, as the next run of each study would; returns those failed.

    `storage` is the store's Optuna storage (`nnsearch.search.optuna_setup.optuna_storage`).
    """
    repaired = []
    for name in sorted({trial.study for trial in lost}):
        with advisory_lock(store, f"study:{name}"), quiet_optuna():
            study = optuna.load_study(study_name=name, storage=storage)
            mine = {trial.trial_id: trial for trial in lost if trial.study == name}
            repaired += [mine[trial_id] for trial_id in fail_trials(study, store, sorted(mine))]
    return repaired


def _naive(moment: dt.datetime | str) -> dt.datetime:
    """A timestamp as naive datetime (SQLite returns text, PostgreSQL an aware value)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return moment.replace(tzinfo=None)
