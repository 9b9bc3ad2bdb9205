"""Heartbeats of running trials, so a killed worker's trial is noticed and retried."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import optuna


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of the study's storage (None: it keeps none, e.g. in memory)."""
    return getattr(study._storage, "get_heartbeat_interval", lambda: None)()


def record_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """Record one heartbeat of the trial now (nothing for a storage without heartbeats)."""
    if heartbeat_interval(study):
        storage: Any = study._storage  # an RDBStorage (heartbeat_interval says so); BaseStorage does not declare it
        storage.record_heartbeat(trial_id)


class Heartbeat:
    """Context manager: records the trial's heartbeat every `interval` s in a daemon thread.

    Other workers fail a RUNNING trial whose heartbeat is older than the storage's
    grace period (`nnsearch.search.lost_trials`) and run it again.
    """

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self._study = study
        self._storage: Any = study._storage  # an RDBStorage has record_heartbeat; BaseStorage does not say so
        self._trial_id = trial._trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        interval = heartbeat_interval(self._study)
        if interval:
            record_heartbeat(self._study, self._trial_id)
            self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True, name="nnsearch-heartbeat")
            self._thread.start()
        return self

    def _beat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # a missed beat is retried next interval; never kill the trial for it
                continue

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
