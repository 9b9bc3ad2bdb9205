"""The one trial path: `TrialLoop.run_trial` (ask/tell loop) and `TrialLoop.objective` (optuna.optimize)
both run the evaluation under the interrupt guard with the trial's heartbeat, and fail an interrupted trial."""

from __future__ import annotations

import os
import signal
import threading

import optuna
import pytest

from nnsearch.common import interrupts
from nnsearch.model.space import load_space
from nnsearch.search.candidate_trial import TrialOutcome
from nnsearch.search.config import HeartbeatConfig, StudyConfig
from nnsearch.search.optuna_setup import open_optuna_study
from nnsearch.search.trial_loop import TrialLoop
from nnsearch.store.engine import Store

TINY = load_space("tiny")


class Observing:
    """An evaluation backend that notes what surrounds it (guard, heartbeat) and can be Ctrl-C'd by the user."""

    def __init__(self, ctrl_c: bool = False) -> None:
        self.ctrl_c = ctrl_c
        self.seen: list[tuple[bool, bool]] = []

    def __call__(self, trial: optuna.Trial) -> TrialOutcome:
        arch = TINY.suggest(trial)
        beating = any(t.name == "nnsearch-heartbeat" and t.is_alive() for t in threading.enumerate())
        self.seen.append((interrupts._active_guard is not None, beating))
        if self.ctrl_c:
            os.kill(os.getpid(), signal.SIGINT)
        return TrialOutcome(trial.number, arch, "complete", 30.0 - trial.number, 5.0 + trial.number, 100)


def _study(store, name: str) -> optuna.Study:
    config = StudyConfig.build(name=name, space=TINY)
    return open_optuna_study(config, store, optuna.samplers.RandomSampler(seed=0), HeartbeatConfig(1, 5))


def test_run_and_optimize_share_the_guard_and_the_heartbeat(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}")
    study = _study(store, "paths")
    backend = Observing()
    loop = TrialLoop(study, backend, ["psnr", "latency_ms"])
    loop.run(2)
    study.optimize(loop.objective, n_trials=1)
    assert backend.seen == [(True, True)] * 3
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.trials[2].values == [28.0, 7.0]


@pytest.mark.parametrize("path", ["run", "optimize"])
def test_ctrl_c_during_evaluation_fails_the_trial_on_both_paths(tmp_path, path):
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}")
    study = _study(store, f"ctrl-c-{path}")
    loop = TrialLoop(study, Observing(ctrl_c=True), ["psnr", "latency_ms"])
    with pytest.raises(KeyboardInterrupt):
        loop.run(1) if path == "run" else study.optimize(loop.objective, n_trials=1)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_a_new_study_can_start_from_the_spaces_reference_students(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}")
    config = StudyConfig.build(name="refs", space=TINY, start_from_references=True)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = open_optuna_study(config, store, sampler, HeartbeatConfig(1, 5))
    backend = Observing()
    TrialLoop(study, backend, ["psnr", "latency_ms"]).run(3)
    reopened = open_optuna_study(config, store, sampler, HeartbeatConfig(1, 5))  # a resume queues nothing again
    trials = reopened.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    labels = [a.label for a in TINY.references]
    assert [t.user_attrs.get("reference") for t in trials[: len(labels)]] == labels
    assert [TINY.params_of(a) for a in TINY.references] == [
        {k: v for k, v in t.params.items()} for t in trials[: len(labels)]
    ]


def test_a_student_no_better_than_its_noisy_input_is_called_out_in_its_trial_line() -> None:
    from nnsearch.search.candidate_trial import no_gain_note

    assert "no better than the noisy input (36.74 dB)" in no_gain_note(36.74, 36.74)
    assert "still outputs about its input" in no_gain_note(36.71, 36.74)
    assert "worse than the noisy input (36.74 dB)" in no_gain_note(24.13, 36.74)
    assert no_gain_note(37.20, 36.74) == ""
