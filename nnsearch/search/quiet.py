"""Optuna calls without its notices: experimental-API and heartbeat warnings, INFO logging (scoped)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Inside: Optuna logs warnings only, and its experimental/heartbeat notices are not shown.

    Scoped: the caller's logging level and warning filters are restored on exit.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            warnings.filterwarnings("ignore", message=".*(group|multivariate|independent).*")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
