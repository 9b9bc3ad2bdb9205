"""Replay of a recorded study: lookups, hypervolume curves, determinism, errors and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from nnsearch.cli import main
from nnsearch.errors import NNSearchError
from nnsearch.latency.service import fill_space_table, predict_latency
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.replay.compare import FrontTracker, parse_reference, replay
from nnsearch.replay.table import ParameterEncoding, ReplayRun, ReplayTable, recorded_space
from nnsearch.search.study import DIRECTIONS, optuna_storage
from nnsearch.store.record import EpochRecord, LatencyRecord, ModelRecord
from nnsearch.store.recording import record_trial

STUDY = "recorded"
TINY = load_space("tiny")


def tiny_archs(count: int, seed: int = 0) -> list[Arch]:
    """`count` distinct students of the tiny space, drawn with a seeded random chooser."""
    rng, found = random.Random(seed), {}
    while len(found) < count:
        arch = TINY.sample(lambda _name, choices: rng.choice(list(choices)))
        found.setdefault(arch, None)
    return list(found)


def objectives_of(arch: Arch, params: int) -> tuple[float, float]:
    """Deterministic, conflicting objectives: bigger students are better and slower."""
    return 20.0 + 2.0 * np.log(params), 1.0 + params / 500.0 + (3.0 if arch.downsample == "conv" else 0.0)


def record(store, archs: list[Arch], study: str = STUDY, with_optuna: bool = False) -> dict[str, tuple[float, float]]:
    """Record `archs` as completed trials of `study` (real students, their parameter counts); returns nn -> values."""
    values = {}
    optuna_study = (
        optuna.create_study(storage=optuna_storage(store), study_name=study, directions=list(DIRECTIONS))
        if with_optuna
        else None
    )
    for number, arch in enumerate(archs):
        params = sum(p.numel() for p in build_student(arch).parameters())
        psnr, latency = objectives_of(arch, params)
        values[arch.name] = (psnr, latency)
        rec = ModelRecord(
            nn=arch.name,
            code=arch.model_code(),
            arch_json=json.dumps(arch.to_dict(), sort_keys=True),
            prm={"steps": 2},
            dataset="builtin",
            transform="crops_32",
            transform_code="# crops 32\n",
            params=params,
            macs=1e6,
            macs_hw=(64, 96),
            depth=4,
            model_size_bytes=4 * params,
            epochs=[EpochRecord(epoch=0, psnr=psnr, ssim=0.5, duration_ns=10**6)],
            latencies=[
                LatencyRecord(
                    device="host-cpu",
                    runtime="litert",
                    runtime_version="test",
                    threads=1,
                    height=64,
                    width=96,
                    kind="predicted",
                    median_ms=latency,
                )
            ],
        )
        record_trial(store, study, number, rec)
        if optuna_study is not None:
            names = TINY.params_of(arch)
            optuna_study.add_trial(
                optuna.trial.create_trial(
                    params=names,
                    values=[psnr, latency],
                    distributions={n: optuna.distributions.CategoricalDistribution(TINY.choices_of(n)) for n in names},
                )
            )
    return values


@pytest.fixture
def recorded(store):
    values = record(store, tiny_archs(14))
    return store, ReplayTable.load(store, STUDY, space=TINY), values


def test_replay_gives_one_non_decreasing_curve_per_seed(recorded):
    _, table, _ = recorded
    result = replay(table, ["tpe", "nsga2", "random"], trials=12, seeds=3, verbose=False)
    for sampler in ("tpe", "nsga2", "random"):
        curves = result.curves(sampler)
        assert curves.shape == (3, 12)
        assert np.all(np.diff(curves, axis=1) >= 0)
        assert np.all(curves[:, 0] > 0) and np.all(curves[:, -1] <= result.table_volume + 1e-9)
    summary = result.summary()
    assert list(summary["sampler"]) == ["tpe", "nsga2", "random"]
    assert np.allclose(summary["hv_100_mean"], [result.curves(s)[:, -1].mean() for s in result.samplers])
    assert result.trials_to_reach("random", result.at_fraction("random", 1.0).mean()) <= 1.0
    assert result.trials_to_reach("random", result.table_volume * 2) == float("inf")


def test_lookup_of_a_recorded_arch_returns_its_recorded_values(recorded):
    _, table, values = recorded
    assert len(table) == len(values)
    for arch in table.candidates["arch"]:
        found = table.lookup(arch)
        assert found.exact and found.distance == 0.0
        assert table.candidates.at[found.row, "nn"] == arch.name
        assert table.values(found.row) == pytest.approx(values[arch.name])


def two_student_table() -> tuple[ReplayTable, Arch]:
    """A table of a 3-level student (row 0) and a 2-level one (row 1, returned too)."""
    near = Arch(widths=(4, 8), blocks=(1, 1), skips=("concat",), block="plain", downsample="conv")
    far = Arch(widths=(8, 16, 24), blocks=(0, 0, 0), skips=("add", "add"), block="residual", downsample="maxpool")
    return ReplayTable(
        "t",
        pd.DataFrame(
            {
                "nn": [far.name, near.name],
                "trial": [0, 1],
                "psnr": [30.0, 25.0],
                "latency_ms": [9.0, 4.0],
                "arch": [far, near],
            }
        ),
        TINY,
    ), near


def test_unrecorded_arch_gets_the_nearest_recorded_candidate():
    table, _near = two_student_table()
    proposal = Arch(widths=(4, 8), blocks=(1, 0), skips=("concat",), block="plain", downsample="conv")
    found = table.lookup(proposal)
    assert not found.exact and found.row == 1 and found.distance == pytest.approx(1.0)
    assert table.values(found.row) == (25.0, 4.0)


def test_distinct_rule_gives_each_new_proposal_an_unused_student_and_repeats_the_same_answer():
    table, near = two_student_table()
    first = Arch(widths=(4, 8), blocks=(1, 0), skips=("concat",), block="plain", downsample="conv")
    second = Arch(widths=(4, 8), blocks=(0, 1), skips=("concat",), block="plain", downsample="conv")
    third = Arch(widths=(4, 8), blocks=(0, 0), skips=("concat",), block="plain", downsample="conv")
    distinct, nearest = ReplayRun(table, "distinct"), ReplayRun(table, "nearest")
    assert distinct.answer(first).row == 1 and nearest.answer(first).row == 1
    assert distinct.answer(second).row == 0 and nearest.answer(second).row == 1  # row 1 is taken: next nearest
    assert distinct.answer(second).row == 0  # the same proposal again: the same answer
    assert distinct.answer(near).exact and distinct.answer(near).row == 1  # a recorded arch is always itself
    assert distinct.answer(third).row == 1  # every student used: the nearest overall
    with pytest.raises(NNSearchError, match="unknown neighbour rule 'closest'.*distinct.*nearest"):
        ReplayRun(table, "closest")


def test_under_the_distinct_rule_random_proposals_get_more_distinct_students(recorded):
    _, table, _ = recorded
    distinct = replay(table, ["random", "tpe"], trials=len(table), seeds=3, verbose=False)
    nearest = replay(table, ["random"], trials=len(table), seeds=3, rule="nearest", verbose=False)
    assert distinct.rule == "distinct" and nearest.rule == "nearest"
    # random proposals do not depend on the answers, so both rules see the same proposals;
    # "nearest" collapses close ones onto one student, "distinct" gives each its own
    per_seed = {
        rule: result.runs[result.runs["sampler"] == "random"].groupby("seed")["nn"].nunique()
        for rule, result in (("distinct", distinct), ("nearest", nearest))
    }
    assert (per_seed["distinct"] >= per_seed["nearest"]).all() and per_seed["distinct"].sum() > per_seed[
        "nearest"
    ].sum()
    assert distinct.summary()["distinct_candidates"].min() > 0.6 * len(table)


def test_parameter_distance_counts_ordinal_steps_categories_and_missing_levels():
    encoding = ParameterEncoding(TINY)
    base = Arch(widths=(4, 8), blocks=(1, 1), skips=("concat",))
    wider = Arch(widths=(8, 8), blocks=(1, 1), skips=("concat",))
    other_skip = Arch(widths=(4, 8), blocks=(1, 1), skips=("add",))
    deeper = Arch(widths=(4, 8, 16), blocks=(1, 1, 1), skips=("concat", "concat"))
    table = np.stack([encoding.encode(a) for a in (base, wider, other_skip, deeper)])
    # deeper: levels 2->3 is one ordinal step (1.0), plus width_2, blocks_2 and skip_1 it alone has
    assert encoding.distances(table, encoding.encode(base)).tolist() == [0.0, 1.0, 1.0, 4.0]


def test_same_seed_gives_the_same_curve(recorded):
    _, table, _ = recorded
    first = replay(table, ["tpe", "random"], trials=9, seeds=2, verbose=False)
    again = replay(table, ["tpe", "random"], trials=9, seeds=2, verbose=False)
    pd.testing.assert_frame_equal(first.runs, again.runs)


def test_front_tracker_matches_the_hypervolume_of_all_points():
    tracker = FrontTracker({"psnr": 0.0, "latency_ms": 10.0})
    volumes = [tracker.add(p) for p in [(5.0, 5.0), (4.0, 6.0), (6.0, 8.0), (2.0, 1.0), (6.0, 8.0)]]
    # boxes: (5 x 5) then +(6-5)*(10-8) for (6, 8), then +2 x (5-1) for (2, 1)
    assert volumes == pytest.approx([25.0, 25.0, 27.0, 35.0, 35.0])


def test_space_is_read_from_the_optuna_trials(store):
    record(store, tiny_archs(8, seed=3), study="with-optuna", with_optuna=True)
    space = recorded_space(store, "with-optuna")
    for key in ("levels", "widths", "blocks", "skip", "block", "downsample", "global_residual"):
        assert getattr(space, key) == getattr(TINY, key)


def test_space_stored_as_a_study_attribute_is_preferred(store):
    import yaml

    study = optuna.create_study(storage=optuna_storage(store), study_name="attr", directions=list(DIRECTIONS))
    raw = yaml.safe_load(Path(TINY.source).read_text())
    study.set_user_attr("space", {**raw, "name": "stored-tiny"})
    space = recorded_space(store, "attr")
    assert space.name == "stored-tiny" and space.widths == TINY.widths and space.references == TINY.references
    study.set_user_attr("space", {**raw, "widths": "wide"})
    with pytest.raises(NNSearchError, match="stored search space is invalid.*widths"):
        recorded_space(store, "attr")


def test_errors_are_clear(recorded):
    store, table, _ = recorded
    with pytest.raises(NNSearchError, match="study 'nope' has no recorded trials.*recorded"):
        ReplayTable.load(store, "nope", space=TINY)
    with pytest.raises(NNSearchError, match="search space is unknown.*--space"):
        ReplayTable.load(store, STUDY)
    with pytest.raises(NNSearchError, match="unknown sampler.*'cmaes'.*random"):
        replay(table, ["tpe", "cmaes"], trials=3, seeds=1, verbose=False)
    for trials in (0, -2):
        with pytest.raises(NNSearchError, match=f"trials must be positive, got {trials}"):
            replay(table, ["random"], trials=trials, seeds=1, verbose=False)
    with pytest.raises(NNSearchError, match="PSNR,LATENCY"):
        parse_reference("20")


def test_cli_prints_the_table_and_writes_csv_and_png(recorded, tmp_path, capsys):
    store, _, _ = recorded
    args = [
        "replay",
        "--study",
        STUDY,
        "--db",
        store.url,
        "--space",
        "tiny",
        "--trials",
        "8",
        "--seeds",
        "2",
        "--sampler",
        "tpe,random",
        "--reference",
        "20,60",
        "--results",
        str(tmp_path),
        "--neighbour",
        "nearest",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "neighbour rule 'nearest'" in out
    assert "reference point: psnr=20, latency_ms=60" in out
    assert "HV@25% (2 trials)" in out and "HV@100% (8 trials)" in out
    assert "tpe" in out and "random" in out
    folder = tmp_path / STUDY / "replay"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 2 * 2 * 8 and set(runs["sampler"]) == {"tpe", "random"}
    assert (folder / "hypervolume.png").read_bytes()[:4] == b"\x89PNG"
    assert list(pd.read_csv(folder / "summary.csv")["sampler"]) == ["tpe", "random"]
    assert main(["replay", "--study", STUDY, "--db", store.url, "--space", "tiny", "--trials", "0"]) == 2
    assert "trials must be positive" in capsys.readouterr().err


def test_an_unknown_neighbour_rule_is_refused(recorded):
    _, table, _ = recorded
    with pytest.raises(NNSearchError, match="unknown neighbour rule 'closest'"):
        replay(table, ["random"], trials=3, seeds=1, rule="closest", verbose=False)


def test_the_guided_sampler_gets_the_stored_lookup_table(store):
    record(store, tiny_archs(10))  # latencies recorded at 64x96 on host-cpu
    assert ReplayTable.load(store, STUDY, space=TINY).latency_ms is None  # the store has no table yet
    fill_space_table(store, TINY, 64, 96, runs=1, verbose=False)
    table = ReplayTable.load(store, STUDY, space=TINY)
    arch = tiny_archs(1, seed=9)[0]
    assert table.latency_ms(arch) == pytest.approx(predict_latency(store, arch, "host-cpu", 64, 96, 1))
    result = replay(table, ["guided"], trials=10, seeds=2, verbose=False)
    assert (result.runs.groupby("seed")["nn"].nunique() >= 8).all()  # new proposals get unused students
    assert np.all(np.diff(result.curves("guided"), axis=1) >= 0) and np.all(result.curves("guided")[:, -1] > 0)
