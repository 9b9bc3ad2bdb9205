"""A real 2-trial study on the tiny space with tiny images into a temporary SQLite store."""

import json
import math

import numpy as np
import optuna
import pytest
import torch
from sqlalchemy import func, select

from nnsearch.commands.summary import summarize
from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch, load_model_code
from nnsearch.model.space import load_space
from nnsearch.search.study import LatencyConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.store.schema import NN, LatencyRun, Stat, TrainStat, TrialLink, Weights
from nnsearch.train.distill import DistillConfig


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    store = Store(f"sqlite:///{root / 'store.db'}")
    config = StudyConfig.build(
        name="e2e",
        space=load_space("tiny"),
        data=None,
        max_side=64,
        teacher_steps=20,
        teacher_margin_db=-math.inf,  # a 20-step teacher only exercises the pipeline; quality: test_teacher_check
        distill=DistillConfig(steps=6, epochs=2, batch=2, crops=(32,)),
        latency=LatencyConfig(height=64, width=96, runs=2, warmup=1),
    )
    study = Study(config, store, verbose=False, results_root=root / "results")
    study.run(2)
    assert study.results_dir == root / "results" / "e2e"
    return study, store, root


def test_trials_and_rows_are_recorded(finished_study):
    study, store, _ = finished_study
    trials = study.optuna.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    with store.session() as s:
        links = s.scalars(select(TrialLink).where(TrialLink.study == "e2e")).all()
        assert sorted(link.trial_number for link in links) == [0, 1]
        for link in links:
            epochs = s.scalars(
                select(Stat.epoch).where(Stat.nn == link.nn, Stat.prm == link.prm, Stat.metric == "psnr")
            ).all()
            assert sorted(epochs) == [0, 1]
            assert s.scalar(select(func.count()).select_from(LatencyRun).where(LatencyRun.nn == link.nn)) >= 1
            assert s.get(Weights, (link.nn, link.prm)) is not None
        assert s.scalar(select(func.count()).select_from(TrainStat)) >= 2
        psnrs = s.scalars(select(Stat.accuracy).where(Stat.metric == "psnr")).all()
        assert all(10.0 < v < 60.0 for v in psnrs)


def test_stored_code_rebuilds_the_same_architecture(finished_study):
    _, store, _ = finished_study
    with store.session() as s:
        rows = s.scalars(select(NN)).all()
        assert rows
        for row in rows:
            arch = Arch.from_dict(json.loads(row.arch))
            assert arch.name == row.name
            module = load_model_code(row.code)
            net = module.Net((1, 3, 32, 32), (1, 3, 32, 32), {"lr": 1e-3}, "cpu")
            weights = s.scalars(select(Weights).where(Weights.nn == row.name)).first()
            import io

            net.load_state_dict(torch.load(io.BytesIO(weights.state)))
            assert net(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_study_resumes_and_summary_is_written(finished_study):
    study, store, root = finished_study
    again = Study(study.config, store, verbose=False)
    again.results_dir = study.results_dir
    again.run(3)  # until 3 finished trials in all: one more
    assert len(again.optuna.trials) == 3
    again.run(3)  # the study has them: nothing runs
    assert len(again.optuna.trials) == 3
    summary = summarize(again, results_root=root / "results")
    assert summary.complete == 3
    assert summary.csv_path.exists() and summary.png_path.stat().st_size > 1000
    assert 1 <= len(summary.front) <= 3
    assert summary.line().startswith("demo: 3 trials complete")


def _budget_study(tmp_path, budget_ms, sampler="random", name=None):
    store = Store(f"sqlite:///{tmp_path / 'budget.db'}")
    config = StudyConfig.build(
        name=name or f"budget-{sampler}",
        space=load_space("tiny"),
        data=None,
        max_side=64,
        teacher_steps=20,
        teacher_margin_db=-math.inf,  # a 20-step teacher only exercises the pipeline; quality: test_teacher_check
        sampler=sampler,
        distill=DistillConfig(steps=4, epochs=1, batch=2, crops=(32,)),
        latency=LatencyConfig(height=32, width=32, runs=1, warmup=0),
        max_latency_ms=budget_ms,
    )
    study = Study(config, store, verbose=False)
    study.results_dir = tmp_path / "results"
    return study, store


def test_unreachable_latency_budget_is_refused_before_training(tmp_path):
    study, store = _budget_study(tmp_path, 1e-6)
    with pytest.raises(NNSearchError, match="below anything space 'tiny' can reach"):
        study.run(2)
    assert study.optuna.trials == []
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(TrialLink)) == 0


def test_latency_budget_skips_training_of_slow_candidates(tmp_path):
    probe, _ = _budget_study(tmp_path, None, name="probe")  # its own study: a budget is a setting
    fastest = min(probe.predicted_ms(a) for a in probe.config.space.fastest_candidates())
    study, store = _budget_study(tmp_path, fastest * 1.001)
    study.run(3)
    rows = study.results()
    assert len(rows) == 3 and "infeasible" in set(rows["state"])
    for _, row in rows.iterrows():
        assert (row["state"] == "infeasible") == (row["predicted_ms"] > fastest * 1.001)
    infeasible = rows[rows["state"] == "infeasible"]
    assert infeasible["psnr"].isna().all()
    excess = {t.number: t.user_attrs["latency_excess_ms"] for t in study.optuna.trials}
    assert all(excess[n] > 0 for n in infeasible["trial"])
    with store.session() as s:
        trained = set(s.scalars(select(Stat.nn)).all())
        assert trained.isdisjoint(set(infeasible["nn"]))
        assert set(s.scalars(select(LatencyRun.kind).where(LatencyRun.nn.in_(list(infeasible["nn"]))))) == {"predicted"}


def test_the_guided_sampler_spends_no_trial_over_the_budget(tmp_path):
    probe, _ = _budget_study(tmp_path, None, name="probe")  # its own study: a budget is a setting
    space = probe.config.space
    budget = float(
        np.median(
            [probe.predicted_ms(space.sample(lambda _n, c, i=i: c[i % len(c)])) for i in range(2)]
            + [probe.predicted_ms(a) for a in space.fastest_candidates()]
        )
    )
    study, _ = _budget_study(tmp_path, budget, sampler="guided")
    study.run(3)
    rows = study.results()
    assert list(rows["state"]) == ["complete"] * 3
    assert (rows["predicted_ms"] <= budget).all()
