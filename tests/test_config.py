"""The study configuration: one tree, one default per setting, stored with the study and checked on resume."""

from __future__ import annotations

import math

import pytest

import nnsearch
from nnsearch.cli import build_parser, main
from nnsearch.commands import given_settings
from nnsearch.errors import NNSearchError
from nnsearch.model.space import load_space
from nnsearch.search.config import CHANGES_ATTR, SAMPLER_NAMES, SETTINGS, EarlyStopRule, StudyConfig
from nnsearch.store.timings import study_configuration
from nnsearch.train.config import LOSS_NAMES, DistillConfig

TINY = load_space("tiny")


def test_every_setting_has_one_path_one_shortcut_and_a_stored_form():
    config = StudyConfig.build(
        "c",
        TINY,
        steps=7,
        epochs=1,
        teacher_steps=5,
        max_side=64,
        early_stop=0.5,
        precision="int8",
        **{"latency.height": 32},
        sampler="random",
    )
    assert (config.distill.steps, config.teacher.steps, config.data.max_side, config.latency.height) == (7, 5, 64, 32)
    assert config.budget.early_stop == EarlyStopRule(margin_db=0.5) and config.sampler.name == "random"
    assert config.get("distill.steps") == config.get("steps") == 7
    assert StudyConfig.from_dict("c", TINY, config.to_dict()) == config
    assert len({s.path for s in SETTINGS.values()}) == len(SETTINGS)
    with pytest.raises(NNSearchError, match=r"unknown setting\(s\) \['stepz'\]"):
        config.replace(stepz=3)
    with pytest.raises(NNSearchError, match="need steps >= epochs"):
        config.replace(steps=1, epochs=2)
    with pytest.raises(NNSearchError, match="unknown precision 'int4'"):
        config.replace(precision="int4")


def test_the_seed_is_the_study_s_and_the_distillation_follows_it():
    config = StudyConfig.build("s", TINY, seed=3)
    assert config.distill.seed == 3 and config.replace(seed=4).distill.seed == 4
    assert config.replace(distill=DistillConfig(steps=9, seed=1), seed=5).distill.seed == 1  # a plan seed of its own
    assert StudyConfig.from_dict("s", TINY, config.replace(distill_seed=2).to_dict()).distill.seed == 2


def test_the_flat_format_of_earlier_versions_is_read():
    old = {
        "data_spec": None,
        "distill": {"steps": 11, "epochs": 1, "crops": [32], "seed": 2},
        "latency": {"device": "host-cpu", "height": 64, "width": 96, "threads": 1},
        "teacher": "paper",
        "teacher_steps": 20,
        "teacher_margin_db": -math.inf,
        "sampler": "tpe",
        "seed": 2,
        "max_side": 64,
        "early_stop": None,
        "precision": "w8a16",
        "calibration_samples": 3,
    }
    config = StudyConfig.from_dict("old", TINY, old)
    assert (config.distill.steps, config.distill.crops, config.latency.width, config.teacher.source) == (
        11,
        (32,),
        96,
        "paper",
    )
    assert config.budget.early_stop is None and config.latency.precision == "w8a16" and config.seed == 2
    assert config.teacher.margin_db == -math.inf and config.sampler.name == "tpe"


def test_names_that_the_light_config_repeats_match_the_code():
    from nnsearch.search.samplers import SAMPLERS
    from nnsearch.train.distill import LOSSES

    assert set(LOSSES) == set(LOSS_NAMES) and set(SAMPLERS) == set(SAMPLER_NAMES)


def test_resuming_with_another_steps_is_an_error_naming_it_unless_the_change_is_asked_for(store, tmp_path):
    created = nnsearch.create_study(
        "resume", space="tiny", db=store, steps=7, epochs=1, verbose=False, results_root=tmp_path
    )
    with pytest.raises(NNSearchError, match=r"steps \(distill.steps\): stored 7, given 9.*allow_changes=\['steps'\]"):
        nnsearch.create_study("resume", db=store, steps=9, verbose=False)
    with pytest.raises(NNSearchError, match=r"steps \(distill.steps\)"):
        nnsearch.create_study("resume", config=created.config.replace(steps=9), db=store, verbose=False)
    same = nnsearch.create_study("resume", db=store, verbose=False)  # no settings: the stored ones
    assert same.config.to_dict() == created.config.to_dict()
    changed = nnsearch.create_study("resume", db=store, steps=9, allow_changes=["steps"], verbose=False)
    assert changed.config.distill.steps == 9
    assert nnsearch.load_study("resume", db=store, verbose=False).config.distill.steps == 9
    log = changed.optuna.user_attrs[CHANGES_ATTR]
    assert [(c["setting"], c["from"], c["to"]) for c in log] == [("distill.steps", 7, 9)]
    with pytest.raises(NNSearchError, match="precision cannot change"):
        nnsearch.create_study("resume", db=store, precision="int8", allow_changes=["precision"], verbose=False)
    with pytest.raises(NNSearchError, match="study 'resume' already exists"):
        nnsearch.create_study("resume", db=store, load_if_exists=False, verbose=False)
    with pytest.raises(NNSearchError, match="study 'fresh' is new: give its search space"):
        nnsearch.create_study("fresh", db=store, verbose=False)


def test_create_study_accepts_start_from_references(store):
    study = nnsearch.create_study("refs", space="tiny", db=store, start_from_references=True, verbose=False)
    assert study.config.sampler.start_from_references
    queued = [t.user_attrs.get("reference") for t in study.optuna.get_trials(deepcopy=False)]
    assert queued == [r.label for r in TINY.references]


def test_readers_take_the_latency_target_from_the_stored_configuration(store):
    nnsearch.create_study(
        "target", space="tiny", db=store, height=32, width=48, threads=2, precision="int8", verbose=False
    )
    query = study_configuration(store, "target")
    assert (query.device, query.height, query.width, query.threads, query.precision) == ("host-cpu", 32, 48, 2, "int8")
    assert study_configuration(store, "target", "pixel", "fp32").precision == "fp32"
    assert study_configuration(store, "none").height is None


def test_the_cli_resume_keeps_stored_values_and_names_a_differing_option(store_url, capsys):
    nnsearch.create_study("cli", space="tiny", db=store_url, steps=7, epochs=1, verbose=False)
    assert main(["search", "--study", "cli", "--steps", "9", "--trials", "1", "--db", store_url]) == 2
    err = capsys.readouterr().err
    assert "steps (distill.steps): stored 7, given 9" in err and "--change steps" in err


def test_search_options_map_to_settings():
    args = build_parser().parse_args(
        [
            "search",
            "--steps",
            "5",
            "--teacher-steps",
            "3",
            "--no-measure",
            "--max-side",
            "64",
            "--no-early-stop",
            "--sampler",
            "tpe",
            "--lr",
            "0.01",
        ]
    )
    assert given_settings(args) == {
        "steps": 5,
        "teacher_steps": 3,
        "measure": False,
        "max_side": 64,
        "early_stop": None,
        "sampler": "tpe",
        "lr": 0.01,
    }
    keys = {
        a.dest.removeprefix("setting__")
        for a in build_parser()._subparsers._group_actions[0].choices["search"]._actions
        if a.dest.startswith("setting__")
    }
    assert keys - set(SETTINGS) == {"resolution", "reduction_factor"}


def test_the_configuration_guide_lists_every_setting():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in page.splitlines()
        if line.startswith("| `")
    }
    assert rows == {s.path: s.key for s in SETTINGS.values()}
