"""The early-stopping rule of multi-objective studies, on history read back from a real store."""

from __future__ import annotations

import pytest
from conftest import model_record

from nnsearch.errors import NNSearchError
from nnsearch.search.early_stopping import EarlyStopRule, EpochHistory, StoppedEarly, check_epoch
from nnsearch.store.recording import record_trial


@pytest.fixture
def history(store) -> EpochHistory:
    # finished trials 0, 1, 2: 5, 10 and 20 ms (min of runs 4.5, 9, 18); PSNR at epoch 0 = 28.0, 28.14, 28.29 (conftest.model_record)
    for arch, latency in enumerate((5.0, 10.0, 20.0)):
        record_trial(store, "es", arch, model_record(arch, latency_ms=latency))
    record_trial(store, "es", 3, model_record(3, latency_ms=1.0), state="stopped")  # not a finished trial
    return EpochHistory.load(store, "es", device="host-cpu")


def test_history_holds_only_complete_trials(history):
    assert history.trials == 3
    assert sorted(history.table["trial"].unique()) == [0, 1, 2]


def test_candidate_dominated_at_the_same_epoch_is_stopped(history):
    with pytest.raises(StoppedEarly, match=r"trial 1 \(predicted 9.0 ms <= 12.0 ms\) had 28.14 dB"):
        check_epoch(EarlyStopRule(margin_db=1.0), history, epoch=0, last_epoch=1, psnr=26.0, latency_ms=12.0)


@pytest.mark.parametrize(
    "psnr, latency, epoch, rule",
    [
        (27.5, 12.0, 0, EarlyStopRule(margin_db=1.0)),  # within the margin
        (20.0, 4.0, 0, EarlyStopRule(margin_db=1.0)),  # faster than every finished trial
        (20.0, 12.0, 1, EarlyStopRule(margin_db=1.0)),  # the last epoch always finishes
        (20.0, 12.0, 0, EarlyStopRule(margin_db=1.0, min_history=4)),  # too little history yet
    ],
)
def test_candidate_that_may_still_be_pareto_optimal_continues(history, psnr, latency, epoch, rule):
    check_epoch(rule, history, epoch=epoch, last_epoch=1, psnr=psnr, latency_ms=latency)


def test_disabled_rule_or_unknown_latency_never_stops(history):
    check_epoch(None, history, epoch=0, last_epoch=1, psnr=0.0, latency_ms=12.0)
    check_epoch(EarlyStopRule(), history, epoch=0, last_epoch=1, psnr=0.0, latency_ms=None)


def test_negative_margin_is_refused():
    with pytest.raises(NNSearchError, match="margin must be >= 0 dB"):
        EarlyStopRule(margin_db=-1.0)
