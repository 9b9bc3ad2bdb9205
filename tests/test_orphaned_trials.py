"""Trials orphaned at the worst moments are failed, retried and counted once (real processes).

The sampler runs inside `ask()`, after Optuna created the trial as RUNNING; a
kill there used to leave a trial that never beat and that every later run
waited for. A kill after the trial's record was committed but before Optuna
was told used to count the trial twice. The driver below is the real
`nnsearch search`, paused in its first trial at one of these moments (in the
sampler's `before_trial`, standing in for a slow sampler, or just before
telling Optuna), so the signal lands exactly in that window.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState
from test_workers import assert_exactly, env, linked_trials, search_command, trials_of  # noqa: F401 - env is a fixture

HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]

DRIVER = """
import pathlib, sys, time
from nnsearch.cli import main
from nnsearch.search.study import Study
from nnsearch.search.trial_loop import TrialLoop

marker, moment = pathlib.Path(sys.argv[1]), sys.argv[2]

def pause(seconds):
    if not marker.exists():  # the first trial only
        marker.write_text("paused")
        time.sleep(seconds)

if moment == "ask":  # Optuna has created the trial, the sampler is "busy"
    build = Study._sampler

    def pausing_sampler(self, seed):
        sampler = build(self, seed)
        before = sampler.before_trial
        def before_trial(study, trial):
            before(study, trial)
            pause(4)
        sampler.before_trial = before_trial
        return sampler

    Study._sampler = pausing_sampler
else:  # the trial's record is committed, Optuna not told yet
    tell = TrialLoop._tell

    def pausing_tell(self, trial, outcome):
        pause(60)
        tell(self, trial, outcome)

    TrialLoop._tell = pausing_tell
sys.exit(main(sys.argv[3:]))
"""


def orphan_first_trial(
    tmp_path, env, db: str, study: str, signum: int, moment: str = "ask"
) -> subprocess.CompletedProcess:
    """Run the study in the driver and send `signum` while its first trial is at `moment` ('ask' or 'tell')."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / f"{study}.paused"
    command = search_command(db, study, 2, *HEARTBEAT)
    process = subprocess.Popen(
        [sys.executable, str(driver), str(marker), moment, *command[3:]],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def check(db: str, env, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnsearch", "check", "--db", db, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def resume(tmp_path, env, db: str, study: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        search_command(db, study, 2, *HEARTBEAT), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")


def test_ctrl_c_inside_ask_fails_the_trial_before_exiting(tmp_path, env, db):
    stopped = orphan_first_trial(tmp_path, env, db, "askint", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert "run the same command again to resume" in stopped.stderr and "Traceback" not in stopped.stderr
    assert [t.state for t in trials_of(db, "askint")] == [TrialState.FAIL]  # failed at once, nothing RUNNING
    assert check(db, env).returncode == 0
    resumed = resume(tmp_path, env, db, "askint")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly(db, "askint", 2)


def test_a_trial_killed_inside_ask_is_failed_and_retried_by_the_next_run(tmp_path, env, db):
    killed = orphan_first_trial(tmp_path, env, db, "askkill", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    [orphan] = trials_of(db, "askkill")
    assert orphan.state == TrialState.RUNNING  # never beat: Optuna alone would never fail it
    resumed = resume(tmp_path, env, db, "askkill")
    assert resumed.returncode == 0, resumed.stderr
    trials = {t.number: t for t in trials_of(db, "askkill")}
    assert trials[orphan.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == orphan.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert_exactly(db, "askkill", 2)


def test_check_reports_a_trial_without_heartbeat_and_repair_queues_its_retry(tmp_path, env):
    db = f"sqlite:///{tmp_path / 'store.db'}"  # the check reads both engines alike (tests of the store)
    orphan_first_trial(tmp_path, env, db, "askrepair", signal.SIGKILL)
    time.sleep(1.5)
    found = check(db, env, "--grace-period", "1")
    assert found.returncode == 1
    assert "study 'askrepair' trial 0 is RUNNING without a live heartbeat (started" in found.stdout, found.stdout
    assert check(db, env).returncode == 0  # younger than the default grace period: maybe still starting
    repaired = check(db, env, "--grace-period", "1", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: study 'askrepair' trial 0 failed, its retry is queued" in repaired.stdout
    assert [t.state for t in trials_of(db, "askrepair")] == [TrialState.FAIL, TrialState.WAITING]
    began = time.monotonic()
    resumed = resume(tmp_path, env, db, "askrepair")
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly(db, "askrepair", 2)
    assert [t.state for t in trials_of(db, "askrepair")][:2] == [TrialState.FAIL, TrialState.COMPLETE]
    assert time.monotonic() - began < 300


def test_a_kill_after_the_record_before_optuna_is_told_counts_the_trial_once(tmp_path, env, db):
    killed = orphan_first_trial(tmp_path, env, db, "aftercommit", signal.SIGKILL, moment="tell")
    assert killed.returncode == -signal.SIGKILL
    [orphan] = trials_of(db, "aftercommit")
    assert orphan.state == TrialState.RUNNING and linked_trials(db, "aftercommit") == [orphan.number]
    resumed = resume(tmp_path, env, db, "aftercommit")
    assert resumed.returncode == 0, resumed.stderr
    assert "search: 2 trials complete" in resumed.stdout, resumed.stdout
    assert trials_of(db, "aftercommit")[orphan.number].state == TrialState.FAIL
    assert_exactly(db, "aftercommit", 2)  # the links are exactly Optuna's complete trials
