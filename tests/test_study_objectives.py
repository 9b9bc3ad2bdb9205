"""Study objectives: PSNR and latency, optionally parameter count; a study keeps its objectives."""

from __future__ import annotations

import dataclasses

import pytest

from nnsearch.errors import NNSearchError
from nnsearch.model.space import load_space
from nnsearch.search.study import Study, StudyConfig, TrialOutcome


def test_outcome_values_follow_the_objectives():
    arch = load_space("tiny").reference("tiny-unet")
    done = TrialOutcome(3, arch, "complete", psnr=31.5, latency_ms=12.0, params=4000)
    assert done.values() == [31.5, 12.0]
    assert done.values(["psnr", "latency_ms", "params"]) == [31.5, 12.0, 4000.0]
    infeasible = TrialOutcome(4, arch, "infeasible", latency_ms=99.0, params=9000)
    assert infeasible.values() == [0.0, 99.0]


def test_params_objective_and_mismatch_with_an_existing_study(store):
    config = StudyConfig.build(name="objectives", space=load_space("tiny"), minimize_params=True)
    study = Study(config, store, verbose=False)
    assert [d.name for d in study.optuna.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study.optuna.metric_names == ["psnr", "latency_ms", "params"]
    with pytest.raises(NNSearchError, match="has 3 objectives, this run asks for \\['psnr', 'latency_ms'\\]"):
        Study(config.replace(minimize_params=False), store, verbose=False)


def test_study_stores_its_space_and_refuses_another_on_resume(store):
    from nnsearch.replay.table import recorded_space

    config = StudyConfig.build(name="spaced", space=load_space("tiny"))
    Study(config, store, verbose=False)
    assert recorded_space(store, "spaced").to_mapping() == config.space.to_mapping()
    Study(config, store, verbose=False)  # the same space resumes
    with pytest.raises(NNSearchError, match="created with search space 'tiny'.*'litedenoise'.*same --space"):
        Study(dataclasses.replace(config, space=load_space("litedenoise")), store, verbose=False)


def test_constructing_a_study_changes_no_global_logging_or_warning_filter(store, tmp_path):
    import warnings

    import optuna

    filters, verbosity = list(warnings.filters), optuna.logging.get_verbosity()
    study = Study(
        StudyConfig.build(name="polite", space=load_space("tiny")), store, verbose=False, results_root=tmp_path / "out"
    )
    assert list(warnings.filters) == filters and optuna.logging.get_verbosity() == verbosity
    assert study.results_dir == tmp_path / "out" / "polite"


def test_facade_loads_a_study_with_its_settings_and_names_bad_input(store, tmp_path):
    import nnsearch

    created = nnsearch.create_study(
        "facade",
        space="tiny",
        db=store,
        sampler="random",
        steps=7,
        epochs=1,
        height=32,
        width=48,
        max_latency_ms=50.0,
        early_stop=0.5,
        verbose=False,
        results_root=tmp_path,
    )
    loaded = nnsearch.load_study("facade", db=store, verbose=False, results_root=tmp_path)
    assert loaded.config.to_dict() == created.config.to_dict()
    assert loaded.config.space.to_mapping() == created.config.space.to_mapping()
    assert (loaded.config.distill.steps, loaded.config.latency.width, loaded.config.budget.early_stop.margin_db) == (
        7,
        48,
        0.5,
    )
    with pytest.raises(NNSearchError, match="no study 'nope' in .*its studies: \\['facade'\\]"):
        nnsearch.load_study("nope", db=store)
    with pytest.raises(NNSearchError, match="unknown setting\\(s\\) \\['stepz'\\]"):
        nnsearch.create_study("bad", space="tiny", db=store, stepz=3)
