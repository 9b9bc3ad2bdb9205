"""Claiming trials: a study ends with exactly N finished trials, retries of lost trials come first."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nnsearch.search.claims import TrialCounts, claim_trial
from nnsearch.search.outcomes import OUTCOME_ATTR
from nnsearch.search.study import HeartbeatConfig, optuna_storage


@pytest.fixture
def study(store) -> optuna.Study:
    return optuna.create_study(
        storage=optuna_storage(store, HeartbeatConfig(1, 2)), study_name="claims", directions=["maximize", "minimize"]
    )


def test_claims_stop_at_the_requested_number(store, study):
    first, second = claim_trial(study, store, 2), claim_trial(study, store, 2)
    assert first.trial is not None and second.trial is not None
    third = claim_trial(study, store, 2)
    assert third.wait and third.counts == TrialCounts(finished=0, running=2, waiting=0, failed=0)
    study.tell(first.trial, [30.0, 5.0])
    study.tell(second.trial, state=TrialState.PRUNED)
    assert claim_trial(study, store, 2).done


def test_lost_trials_are_replaced_and_recorded_failures_count(store, study):
    lost, diverged = claim_trial(study, store, 2).trial, claim_trial(study, store, 2).trial
    study.tell(lost, state=TrialState.FAIL)  # e.g. interrupted: nothing recorded, runs again
    diverged.set_user_attr(OUTCOME_ATTR, "failed")
    study.tell(diverged, state=TrialState.FAIL)  # a recorded result
    claim = claim_trial(study, store, 2)
    assert claim.counts == TrialCounts(finished=1, running=0, waiting=0, failed=1)
    assert claim.trial is not None and claim.trial.number == 2


def test_waiting_retry_is_claimed_before_new_trials(store, study):
    study.enqueue_trial({"x": 1})
    claim = claim_trial(study, store, 1)
    assert claim.counts.waiting == 1 and claim.trial.number == 0
    assert claim.trial.suggest_categorical("x", [0, 1]) == 1
