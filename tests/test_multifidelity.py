"""Multi-fidelity search: promotion rule, continuation from the student's own weights, records per rung,
a killed or interrupted continuation retried, the front at each student's highest rung (real studies)."""

from __future__ import annotations

import math
import signal
import subprocess
import time

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from sqlalchemy import select
from test_workers import env, search_command, trials_of  # noqa: F401 - env is a fixture

from nnsearch.analysis.report import candidates
from nnsearch.errors import NNSearchError
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.search.claims import TrialCounts
from nnsearch.search.live import StudyStatus
from nnsearch.search.multifidelity import (
    CONTINUES_ATTR,
    RUNG_ATTR,
    RungSchedule,
    promotion_order,
    rung_members,
)
from nnsearch.search.study import PHASE_ATTR, LatencyConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.store.hashing import prm_uid
from nnsearch.store.integrity import check_integrity
from nnsearch.store.schema import Stat, TrialLink
from nnsearch.train.distill import DistillConfig, distill

OBJECTIVES = {"psnr": "max", "latency_ms": "min"}


def frame(points: dict[int, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"trial": t, "psnr": p, "latency_ms": ms} for t, (p, ms) in points.items()])


def test_promotion_order_sorts_by_dominance_then_hypervolume_contribution():
    points = {0: (30.0, 10.0), 1: (29.0, 5.0), 2: (28.0, 9.0), 3: (31.0, 20.0), 4: (29.9, 9.9), 5: (float("nan"), 1.0)}
    order = promotion_order(frame(points), OBJECTIVES)
    assert set(order[:4]) == {0, 1, 3, 4}  # the non-dominated four before anything they dominate
    assert order[4:] == [2, 5]  # then the dominated one, then the one without a PSNR
    assert order.index(4) == 3  # 4 sits right next to 0 on the front: it adds the least volume


def test_rung_schedule_is_checked_and_each_rung_names_the_set_it_continues():
    base = DistillConfig(steps=6, epochs=2, seed=3)
    rungs = RungSchedule((6, 18, 54), 3)
    assert rungs.segment(base, 0) == base
    assert (rungs.segment(base, 2).steps, rungs.segment(base, 2).seed) == (36, 5)
    second, first = rungs.hyperparameters(base, 2), rungs.hyperparameters(base, 1)
    assert rungs.hyperparameters(base, 0) == base.hyperparameters()
    assert (second["steps"], second["epochs"], second["rung"], second["continues"]) == (54, 6, 2, prm_uid(first))
    assert first["continues"] == prm_uid(base.hyperparameters())
    assert rungs.total_steps({0: 9, 1: 3, 2: 1}) == 9 * 6 + 3 * 12 + 36
    for bad, message in [((6,), "at least two"), ((6, 6), "increasing"), ((0, 5), "increasing")]:
        with pytest.raises(NNSearchError, match=message):
            RungSchedule(bad)
    with pytest.raises(NNSearchError, match="reduction factor"):
        RungSchedule((6, 12), 1)
    with pytest.raises(NNSearchError, match="first rung"):
        StudyConfig(name="x", space=load_space("tiny"), distill=DistillConfig(steps=8), rungs=RungSchedule((6, 12)))


def test_the_command_line_takes_rungs_and_refuses_a_reduction_factor_without_them():
    from nnsearch.cli import build_parser
    from nnsearch.commands.study import search_config

    def rungs(*argv):
        return search_config(build_parser().parse_args(["search", "--space", "tiny", *argv]))[0].rungs

    assert rungs("--rungs", "300,1200,4800") == RungSchedule((300, 1200, 4800), 3)
    assert rungs("--rungs", "100,400", "--reduction-factor", "4").reduction_factor == 4 and rungs() is None
    with pytest.raises(NNSearchError, match="--reduction-factor needs --rungs"):
        rungs("--reduction-factor", "3")
    with pytest.raises(NNSearchError, match="comma-separated step counts"):
        rungs("--rungs", "300,lots")


def tiny_config(name: str, trials_rungs=(6, 12)) -> StudyConfig:
    return StudyConfig.build(
        name=name,
        space=load_space("tiny"),
        max_side=64,
        teacher_steps=20,
        teacher_margin_db=-math.inf,
        distill=DistillConfig(steps=trials_rungs[0], epochs=2, batch=2, crops=(32,)),
        latency=LatencyConfig(height=64, width=96, runs=1, warmup=0, measure=False),
        rungs=RungSchedule(trials_rungs, 3),
        early_stop=None,
    )


def test_a_two_rung_study_promotes_the_top_third_and_continues_them_from_their_weights(store, tmp_path):
    study = Study(tiny_config("mf"), store, verbose=False, results_root=tmp_path / "results")
    study.run(6)
    trials = study.optuna.get_trials(deepcopy=False)
    continuations = [t for t in trials if CONTINUES_ATTR in t.user_attrs]
    assert TrialCounts.of(study.optuna) == TrialCounts(6, 0, 0, 0, continued=len(continuations), continuing=0)
    rungs = study.reader().rung_results()
    first = rungs[rungs["rung"] == 0]
    assert len(first) == 6 and len(continuations) >= 2  # ASHA: at least the final top third
    for continuation in continuations:  # each promotion was in the top third of rung 0 when it was made
        number = continuation.user_attrs[CONTINUES_ATTR]
        assert continuation.user_attrs[RUNG_ATTR] == 1 and continuation.params == trials[number].params
        members = rung_members(first[first["trial"] < continuation.number], 0)
        assert number in promotion_order(members, OBJECTIVES)[: len(members) // 3]
    promoted = sorted(t.user_attrs[CONTINUES_ATTR] for t in continuations)
    final_top = promotion_order(rung_members(first, 0), OBJECTIVES)[:2]
    assert set(final_top) <= set(promoted) and len(set(promoted)) == len(promoted)
    assert sorted(rungs[rungs["rung"] == 1]["trial"]) == promoted
    # the continuation started from the rung-0 weights: repeating it from them gives the stored rung-1 weights
    number = promoted[0]
    below, above = (rungs[(rungs["trial"] == number) & (rungs["rung"] == r)].iloc[0] for r in (0, 1))
    arch = study.config.space.sample(lambda name, choices: trials[number].params[name])
    student = build_student(arch)
    student.load_state_dict(study.recorder.weights(below["nn"], below["prm"]))
    segment = study.config.rungs.segment(study.config.distill, 1)
    distill(student, study.inputs.targets(1), study.data.val, segment)
    stored = study.recorder.weights(above["nn"], above["prm"])
    assert all(torch.equal(stored[k], v) for k, v in student.state_dict().items())
    scratch = build_student(arch)
    distill(scratch, study.inputs.targets(1), study.data.val, segment)
    assert not all(torch.equal(stored[k], v) for k, v in scratch.state_dict().items())
    with study.store.session() as s:  # rung 1 continues the epoch numbers under a set naming rung 0's
        epochs = s.scalars(
            select(Stat.epoch).where(
                Stat.nn == above["nn"], Stat.prm == above["prm"], Stat.metric == "psnr", Stat.rung == 1
            )
        ).all()
    assert sorted(epochs) == [2, 3]
    assert above["prm"] == prm_uid(study.config.rungs.hyperparameters(study.config.distill, 1))
    front_reports_each_students_highest_rung(study)


def front_reports_each_students_highest_rung(study: Study) -> None:
    """Results, candidates (`nnsearch pareto`) and the live status show each student at its highest rung."""
    results = study.results()
    promoted = {t.user_attrs[CONTINUES_ATTR] for t in study.optuna.trials if CONTINUES_ATTR in t.user_attrs}
    assert sorted(results["trial"]) == [t.number for t in study.optuna.trials if CONTINUES_ATTR not in t.user_attrs]
    assert {int(t) for t in results[results["rung"] == 1]["trial"]} == promoted
    rows = candidates(db=study.store, study="mf")
    assert len(rows) == 6 and sorted(rows["rung"]) == [0] * (6 - len(promoted)) + [1] * len(promoted)
    at_rung_1 = results[results["rung"] == 1].set_index("nn")["psnr"]
    assert rows.set_index("nn").loc[at_rung_1.index, "psnr"].tolist() == pytest.approx(at_rung_1.tolist())
    status = StudyStatus.read(study.optuna, study.store, 6)
    assert f"{len(promoted)} continued to a higher rung" in status.line()
    assert sum(status.front_rungs.values()) == status.pareto_size


def test_a_schema_4_store_gains_rungs(store):
    from conftest import model_record
    from sqlalchemy import inspect, text
    from test_store_schema import stamp

    from nnsearch.store.recording import record_trial
    from nnsearch.store.schema import SCHEMA_VERSION
    from nnsearch.store.versioning import read_version

    record_trial(store, "s", 0, model_record(epochs=2))
    with store.write_engine.begin() as conn:  # drop the rung columns, as schema 4 had them
        for name in ("train_stat", "stat", "trial_link"):
            keep = ", ".join(c["name"] for c in inspect(conn).get_columns(name) if c["name"] != "rung")
            conn.execute(text(f"CREATE TABLE {name}_v4 AS SELECT {keep} FROM {name}"))
        for name in ("train_stat", "trial_link", "stat"):
            conn.execute(text(f"DROP TABLE {name}"))
        for name in ("stat", "train_stat", "trial_link"):
            conn.execute(text(f"ALTER TABLE {name}_v4 RENAME TO {name}"))
    stamp(store, "4")
    reopened = Store(store.url)
    with reopened.read() as conn:
        assert read_version(conn) == str(SCHEMA_VERSION)
        assert {r[0] for r in conn.execute(text("SELECT DISTINCT rung FROM stat"))} == {0}
        assert conn.execute(text("SELECT trial_number, rung FROM trial_link")).all() == [(0, 0)]
    record_trial(reopened, "s", 0, model_record(epochs=2, rung=1, prm={"lr": 1e-3, "rung": 1}))
    with reopened.read() as conn:
        assert sorted(conn.execute(text("SELECT rung FROM trial_link")).scalars()) == [0, 1]
    reopened.dispose()


# ---- real worker processes: a killed continuation, Ctrl-C and resume ----------------------------------------

RUNGS = ["--rungs", "6,150", "--reduction-factor", "3"]


def wait_for_continuation(db: str, study: str, pid: int, timeout_s: float = 300) -> optuna.trial.FrozenTrial:
    """The continuation trial that process `pid` is distilling, once it has started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for trial in trials_of(db, study):
            if (
                trial.state == TrialState.RUNNING
                and CONTINUES_ATTR in trial.user_attrs
                and trial.user_attrs.get(PHASE_ATTR) == "distill"
                and trial.user_attrs.get("worker", "").endswith(f":{pid}")
            ):
                return trial
        time.sleep(0.3)
    raise AssertionError(f"process {pid} never started a continuation in study {study}")


def rung_links(db: str, study: str) -> list[tuple[int, int]]:
    with Store(db).session() as s:
        return sorted(s.execute(select(TrialLink.trial_number, TrialLink.rung).where(TrialLink.study == study)).all())


def assert_consistent(db: str, study: str, candidates_total: int) -> None:
    """`candidates_total` finished candidates, every complete continuation recorded once at its rung."""
    trials = trials_of(db, study)
    first = sorted(t.number for t in trials if t.state == TrialState.COMPLETE and CONTINUES_ATTR not in t.user_attrs)
    continued = sorted(
        (t.user_attrs[CONTINUES_ATTR], t.user_attrs[RUNG_ATTR])
        for t in trials
        if t.state == TrialState.COMPLETE and CONTINUES_ATTR in t.user_attrs
    )
    assert len(first) == candidates_total and continued
    assert rung_links(db, study) == sorted([(n, 0) for n in first] + continued)
    assert check_integrity(db) == []


def test_a_killed_continuation_leaves_the_store_consistent_and_is_retried(tmp_path, env, store_url):
    command = search_command(store_url, "killed", 3, *RUNGS, "--heartbeat-interval", "1", "--grace-period", "3")
    victim = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lost = wait_for_continuation(store_url, "killed", victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert (lost.user_attrs[CONTINUES_ATTR], 1) not in rung_links(store_url, "killed")
    survivor = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert survivor.returncode == 0, survivor.stdout + survivor.stderr
    trials = {t.number: t for t in trials_of(store_url, "killed")}
    assert trials[lost.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs[CONTINUES_ATTR] == lost.user_attrs[CONTINUES_ATTR]
    assert_consistent(store_url, "killed", 3)


def test_ctrl_c_during_a_continuation_and_the_same_command_resumes(tmp_path, env):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    command = search_command(db, "resumed", 3, *RUNGS)
    worker = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    interrupted = wait_for_continuation(db, "resumed", worker.pid)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130 and "Traceback" not in err, err
    assert (interrupted.user_attrs[CONTINUES_ATTR], 1) not in rung_links(db, "resumed")
    assert check_integrity(db) == []
    resumed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "at rung 1: PSNR" in resumed.stdout  # the continuation ran again, from the rung-0 weights
    assert_consistent(db, "resumed", 3)
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already has its 3 trials" in again.stdout
