"""Claiming trials so that any number of workers finish a study with exactly N trials.

Workers (processes on one machine, or on many machines sharing a PostgreSQL
store) each loop: take the study lock, fail trials whose worker stopped sending
heartbeats or that never beat (`lost_trials`; Optuna re-queues them as WAITING
copies), then either claim a trial
(a waiting retry first, else a new one while fewer than N are finished or
running), wait for the others, or stop because N trials are finished.

The study lock is `nnsearch.store.locks.advisory_lock` (released by the server
or the kernel if the worker dies).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from nnsearch.common.interrupts import InterruptGuard
from nnsearch.search.heartbeat import record_heartbeat
from nnsearch.search.lost_trials import fail_lost_trials
from nnsearch.search.quiet import quiet_optuna
from nnsearch.store.engine import Store
from nnsearch.store.locks import advisory_lock

#: Trial user attribute set when a trial ended as a recorded failure (e.g. NaN loss).
OUTCOME_ATTR = "outcome"
#: Trial user attribute naming the worker (host:pid) that ran the trial.
WORKER_ATTR = "worker"


def worker_name() -> str:
    """`host:pid` of this process, as recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TrialCounts:
    """How a study's trials stand, as the claim rule sees them."""

    finished: int  # complete, stopped early, infeasible, or a recorded failure
    running: int
    waiting: int  # retries of trials whose worker died
    failed: int  # crashed, killed or interrupted (not counted as finished)

    @classmethod
    def of(cls, study: optuna.Study) -> "TrialCounts":
        finished = running = waiting = failed = 0
        for trial in study.get_trials(deepcopy=False):
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or is_recorded_failure(trial):
                finished += 1
            elif trial.state == TrialState.RUNNING:
                running += 1
            elif trial.state == TrialState.WAITING:
                waiting += 1
            else:
                failed += 1
        return cls(finished, running, waiting, failed)


def is_recorded_failure(trial: optuna.trial.FrozenTrial) -> bool:
    """A failed trial whose failure is a result (recorded in the store), not a lost worker."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get(OUTCOME_ATTR) == "failed"


@dataclass(frozen=True)
class Claim:
    """The answer to "what should this worker do next?"."""

    trial: optuna.Trial | None  # run this trial
    done: bool  # the study has its trials: stop
    counts: TrialCounts

    @property
    def wait(self) -> bool:
        """Nothing to claim yet, but other workers' trials are still running."""
        return self.trial is None and not self.done


def claim_trial(study: optuna.Study, store: Store, total: int,
                before_ask: Callable[[int], None] | None = None) -> Claim:
    """Claim the next trial of a study that should end with `total` finished trials.

    `before_ask(number)` runs under the lock just before a trial is created, with
    the number that trial will get (e.g. to seed the sampler per trial, so that
    workers do not propose the same candidates). The claimed trial has recorded
    its first heartbeat; a Ctrl-C while it was being created (the sampler runs
    inside `ask()`) fails it and raises KeyboardInterrupt.
    """
    with advisory_lock(store, f"study:{study.study_name}"), quiet_optuna():
        fail_lost_trials(study, store)
        counts = TrialCounts.of(study)
        if counts.finished >= total:
            return Claim(None, True, counts)
        if counts.waiting or counts.finished + counts.running < total:
            if before_ask is not None:
                before_ask(len(study.get_trials(deepcopy=False)))
            return Claim(_ask_with_heartbeat(study), False, counts)
        return Claim(None, False, counts)


def _ask_with_heartbeat(study: optuna.Study) -> optuna.Trial:
    """`study.ask()` with Ctrl-C held back until the trial has its worker and first heartbeat.

    A Ctrl-C that arrived meanwhile fails the trial before KeyboardInterrupt is
    raised, so no trial is left RUNNING by an interrupted process.
    """
    with InterruptGuard() as guard:
        guard.defer()
        trial = study.ask()
        try:
            trial.set_user_attr(WORKER_ATTR, worker_name())
            record_heartbeat(study, trial._trial_id)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        if guard.pending:  # the guard raises KeyboardInterrupt as it exits
            study.tell(trial, state=TrialState.FAIL)
    return trial
