"""Parallel and distributed workers: exact trial counts, crash recovery, Ctrl-C (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import tiny_study_flags
from optuna.trial import TrialState
from sqlalchemy import select

from nnsearch.search.study import PHASE_ATTR, HeartbeatConfig, optuna_storage
from nnsearch.store.engine import Store
from nnsearch.store.integrity import check_integrity
from nnsearch.store.schema import TrialLink
from nnsearch.train.datasets import load_data
from nnsearch.train.teacher import load_or_train_teacher, teacher_config

TINY = tiny_study_flags()


def search_command(db: str, study: str, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nnsearch",
        "search",
        "--db",
        db,
        "--study",
        study,
        "--trials",
        str(trials),
        *TINY,
        *extra,
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment of the worker processes: a cache holding the tiny teacher these tests use."""
    cache = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("NNSEARCH_CACHE")
    os.environ["NNSEARCH_CACHE"] = str(cache)
    try:
        load_or_train_teacher(teacher_config("cpu", 20), load_data(None, max_side=64, seed=0), verbose=False)
    finally:
        os.environ.pop("NNSEARCH_CACHE") if saved is None else os.environ.__setitem__("NNSEARCH_CACHE", saved)
    return {**os.environ, "NNSEARCH_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def trials_of(db: str, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna_storage(Store(db))
    if study not in {s.study_name for s in storage.get_all_studies()}:
        return []
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def wait_for_distillation(db: str, study: str, pid: int, timeout_s: float = 300) -> int:
    """Number of the trial that process `pid` is distilling, once it has started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for trial in trials_of(db, study):
            if (
                trial.state == TrialState.RUNNING
                and trial.user_attrs.get(PHASE_ATTR) == "distill"
                and trial.user_attrs.get("worker", "").endswith(f":{pid}")
            ):
                return trial.number
        time.sleep(0.3)
    raise AssertionError(f"process {pid} never started distilling in study {study}")


def linked_trials(db: str, study: str) -> list[int]:
    with Store(db).session() as s:
        return sorted(s.scalars(select(TrialLink.trial_number).where(TrialLink.study == study)).all())


def assert_exactly(db: str, study: str, total: int) -> None:
    """`total` finished trials, each recorded once in the store, nothing else recorded."""
    trials = trials_of(db, study)
    finished = sorted(t.number for t in trials if t.state == TrialState.COMPLETE)
    assert len(finished) == total
    assert linked_trials(db, study) == finished
    assert check_integrity(db) == []


def test_two_local_workers_finish_exactly_the_requested_trials(tmp_path, env):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    done = subprocess.run(
        search_command(db, "local", 5, "--workers", "2"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "started 2 workers" in done.stdout and "5/5 finished" in done.stderr + done.stdout
    assert_exactly(db, "local", 5)
    workers = {t.user_attrs["worker"] for t in trials_of(db, "local")}
    assert len(workers) == 2  # both processes ran trials
    again = subprocess.run(
        search_command(db, "local", 5, "--workers", "2"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "5 of 5 trials finished" in again.stdout
    assert_exactly(db, "local", 5)


def test_three_machines_share_one_postgresql_study(tmp_path, env, pg_url):
    workers = [
        subprocess.Popen(
            search_command(pg_url, "shared", 6),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], outputs
    assert_exactly(pg_url, "shared", 6)
    assert len({t.user_attrs["worker"] for t in trials_of(pg_url, "shared")}) >= 2


def test_sigkilled_worker_trial_is_failed_and_retried(tmp_path, env):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    fast_heartbeat = ["--heartbeat-interval", "1", "--grace-period", "3", "--steps", "60"]
    workers = [
        subprocess.Popen(
            search_command(db, "crash", 4, *fast_heartbeat),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    victim = workers[0]
    killed_trial = wait_for_distillation(db, "crash", victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    survivor_output = workers[1].communicate(timeout=600)[0]
    assert victim.returncode == -signal.SIGKILL
    assert workers[1].returncode == 0, survivor_output
    trials = {t.number: t for t in trials_of(db, "crash")}
    assert trials[killed_trial].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[killed_trial].params
    assert_exactly(db, "crash", 4)


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path, env):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    command = search_command(db, "stop", 3, "--steps", "60")
    worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_distillation(db, "stop", worker.pid)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err, err
    interrupted = [t for t in trials_of(db, "stop") if t.state == TrialState.FAIL]
    assert len(interrupted) == 1
    assert interrupted[0].number not in linked_trials(db, "stop")
    assert check_integrity(db) == []
    resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly(db, "stop", 3)


def test_heartbeat_settings_are_checked():
    with pytest.raises(Exception, match="grace period > interval"):
        HeartbeatConfig(interval_s=5, grace_s=5)


def test_workers_get_one_gpu_each_and_fall_back_to_the_cpu_without_colliding(tmp_path, env):
    from nnsearch.common.device import assign_gpus, visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert assign_gpus(3, ["2", "5"]) == ["2", "5", "2"] and assign_gpus(2, []) == [None, None]
    db = f"sqlite:///{tmp_path / 'store.db'}"
    gpu_env = {**env, "CUDA_VISIBLE_DEVICES": "0,1", "NNSEARCH_RESULTS": str(tmp_path / "results")}
    done = subprocess.run(
        search_command(db, "gpus", 4, "--workers", "2"),
        env=gpu_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "GPUs 0, 1" in done.stdout
    logs = sorted((tmp_path / "results" / "gpus" / "workers").glob("worker-*.log"))
    devices = [next(line for line in log.read_text().splitlines() if "device" in line) for log in logs]
    assert ["CUDA_VISIBLE_DEVICES=0" in devices[0], "CUDA_VISIBLE_DEVICES=1" in devices[1]] == [True, True]
    assert all("cpu" in line for line in devices)  # no GPU here: each worker trains on the CPU
    assert_exactly(db, "gpus", 4)  # distinct trials, each recorded once
