"""A study's latency constraint as Optuna's samplers and the real optuna-dashboard see it (no network)."""

from __future__ import annotations

import io
import json
import warnings
from wsgiref.util import setup_testing_defaults

from nnsearch.model.space import load_space
from nnsearch.search.config import StudyConfig
from nnsearch.search.optuna_setup import open_optuna_study
from nnsearch.search.quiet import quiet_optuna
from nnsearch.search.samplers import SAMPLERS, SamplerContext, is_feasible, set_latency_constraint
from nnsearch.store.engine import Store

#: (psnr, latency_ms, budget excess) of the trials told; the second is over the budget (and would be
#: Pareto-optimal if it were feasible).
TOLD = [(30.0, 10.0, -5.0), (35.0, 40.0, 25.0), (29.0, 8.0, -7.0)]


def dashboard_study_detail(storage, study_id: int) -> dict:
    """GET /api/studies/<id> of optuna-dashboard's WSGI app, called in-process."""
    from optuna_dashboard import wsgi

    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=f"/api/studies/{study_id}", REQUEST_METHOD="GET", QUERY_STRING="")
    status: list[str] = []
    body = b"".join(wsgi(storage)(environ, lambda code, headers, exc=None: status.append(code)))
    assert status[0].startswith("200"), status
    return json.loads(io.BytesIO(body).read())


def test_feasible_and_infeasible_trials_show_in_optuna_dashboard(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dash.db'}")  # the constraint lives in Optuna's tables, any engine
    config = StudyConfig.build(name="dash", space=load_space("tiny"), max_latency_ms=15.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated constraints_func anywhere
        study = open_optuna_study(config, store, SAMPLERS["tpe"](0, SamplerContext(config.space)))
        with quiet_optuna():
            for psnr, latency, excess in TOLD:
                trial = study.ask()
                config.space.suggest(trial)
                set_latency_constraint(trial, excess)
                study.tell(trial, [psnr, latency])
            study.ask()  # TPE samples with the constraints of the finished trials
    trials = study.get_trials()[:3]
    assert [is_feasible(t) for t in trials] == [True, False, True]
    assert all(t.constraints["latency_excess_ms"] == told[2] for t, told in zip(trials, TOLD))

    detail = dashboard_study_detail(study._storage, study._study_id)
    shown = {t["number"]: t["constraints"] for t in detail["trials"]}
    assert all(shown[n] for n in range(3)), shown  # an empty list would show every trial as feasible
    # the dashboard's plots draw a trial as feasible when every constraint is <= 0, else as "Infeasible Trial"
    assert {n: all(c <= 0 for c in shown[n]) for n in range(3)} == {0: True, 1: False, 2: True}
    assert shown[1] == [25.0]
