"""How a finished trial ended: the user attribute that marks a recorded failure, and the test for it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

#: Trial user attribute set when a trial ended as a recorded failure (e.g. NaN loss).
OUTCOME_ATTR = "outcome"


def is_recorded_failure(trial: optuna.trial.FrozenTrial) -> bool:
    """A failed trial whose failure is a result (recorded in the store), not a lost worker."""
    return trial.state == TrialState.FAIL and trial.user_attrs.get(OUTCOME_ATTR) == "failed"
