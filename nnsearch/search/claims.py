"""Claiming trials so that any number of workers finish a study with exactly N trials.

Workers (processes on one machine, or on many machines sharing a PostgreSQL
store) each loop: take the study lock, fail trials whose worker stopped sending
heartbeats or that never beat (`lost_trials`; Optuna re-queues them as WAITING
copies), then either claim a trial
(a waiting retry first, then a due multi-fidelity continuation, else a new one
while fewer than N are finished or running), wait for the others, or stop
because N trials are finished and no continuation is due or running. N counts
candidates; continuations (`nnsearch.search.multifidelity`) are counted apart.

The study lock is `nnsearch.store.locks.advisory_lock` (released by the server
or the kernel if the worker dies).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from nnsearch.common.interrupts import InterruptGuard
from nnsearch.search.heartbeat import record_heartbeat
from nnsearch.search.lost_trials import fail_lost_trials
from nnsearch.search.outcomes import is_recorded_failure
from nnsearch.search.quiet import quiet_optuna
from nnsearch.store.engine import Store
from nnsearch.store.locks import advisory_lock

if TYPE_CHECKING:
    from nnsearch.search.multifidelity import Promotion

#: Trial user attribute naming the worker (host:pid) that ran the trial.
WORKER_ATTR = "worker"


def worker_name() -> str:
    """`host:pid` of this process, as recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TrialCounts:
    """How a study's trials stand, as the claim rule sees them (candidates; continuations apart)."""

    finished: int  # complete, stopped early, infeasible, or a recorded failure
    running: int
    waiting: int  # queued: retries of trials whose worker died, enqueued reference or given students
    failed: int  # crashed, killed or interrupted (not counted as finished)
    continued: int = 0  # multi-fidelity continuations finished
    continuing: int = 0  # continuations running or waiting for a retry

    @classmethod
    def of(cls, study: optuna.Study) -> TrialCounts:
        from nnsearch.search.multifidelity import is_continuation

        counts = {"finished": 0, "running": 0, "waiting": 0, "failed": 0, "continued": 0, "continuing": 0}
        for trial in study.get_trials(deepcopy=False):
            kind: str | None
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or is_recorded_failure(trial):
                kind = "finished"
            elif trial.state in (TrialState.RUNNING, TrialState.WAITING):
                kind = "running" if trial.state == TrialState.RUNNING else "waiting"
            else:
                kind = "failed"
            if is_continuation(trial):
                kind = {"finished": "continued", "running": "continuing", "waiting": "continuing"}.get(kind)
            if kind is not None:
                counts[kind] += 1
        return cls(**counts)


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


#: Finds the next due multi-fidelity continuation of a study (under the study lock), or None.
PromoteFn = Callable[[optuna.Study], "Promotion | None"]


def claim_trial(
    study: optuna.Study,
    store: Store,
    total: int,
    before_ask: Callable[[int], None] | None = None,
    promote: PromoteFn | None = None,
) -> Claim:
    """Claim the next trial of a study that should end with `total` finished trials.

    `before_ask(number)` runs under the lock just before a trial is created, with
    the number that trial will get (e.g. to seed the sampler per trial, so that
    workers do not propose the same candidates). `promote(study)` (multi-fidelity
    studies) names a student due for its next rung: it is enqueued as a
    continuation and claimed before any new candidate. The claimed trial has
    recorded its first heartbeat; a Ctrl-C while it was being created (the
    sampler runs inside `ask()`) fails it and raises KeyboardInterrupt.
    """
    with advisory_lock(store, f"study:{study.study_name}"), quiet_optuna():
        fail_lost_trials(study, store)
        counts = TrialCounts.of(study)
        retry = (counts.waiting and counts.finished < total) or _continuation_waiting(study)
        promotion = None if retry or promote is None else promote(study)
        if promotion is not None:
            study.enqueue_trial(promotion.params, user_attrs=promotion.user_attrs())
        elif counts.finished >= total and not retry:
            return Claim(None, counts.continuing == 0, counts)
        elif not retry and counts.finished + counts.running >= total:
            return Claim(None, False, counts)
        if before_ask is not None:
            before_ask(len(study.get_trials(deepcopy=False)))
        return Claim(_ask_with_heartbeat(study), False, counts)


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


def _continuation_waiting(study: optuna.Study) -> bool:
    from nnsearch.search.multifidelity import is_continuation

    return any(t.state == TrialState.WAITING and is_continuation(t) for t in study.get_trials(deepcopy=False))
