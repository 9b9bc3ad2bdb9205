"""The guided sampler: its hypervolume gain, its PSNR model, and what it proposes in an Optuna study."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from nnsearch.analysis.pareto import hypervolume
from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.search.samplers import CONSTRAINT_ATTR, SAMPLERS, SamplerContext
from nnsearch.search.samplers.guided import GuidedSampler, best_below, front_improvement
from nnsearch.search.samplers.surrogate import ArchFeatures, BayesianRidge
from nnsearch.search.study import DIRECTIONS

TINY = load_space("tiny")


def test_front_improvement_is_the_hypervolume_a_point_adds() -> None:
    rng = np.random.default_rng(0)
    reference = (10.0, 100.0)
    for _ in range(30):
        front = np.column_stack([rng.uniform(10, 40, 6), rng.uniform(1, 100, 6)])
        candidates = np.column_stack([rng.uniform(5, 45, 20), rng.uniform(0.5, 120, 20)])
        gains = front_improvement(front[:, 0], front[:, 1], candidates[:, 0], candidates[:, 1], reference)
        before = hypervolume(front, reference, ["max", "min"])
        for point, gain in zip(candidates, gains):
            after = hypervolume(np.vstack([front, point]), reference, ["max", "min"])
            assert gain == pytest.approx(after - before, abs=1e-9)


def test_best_below_is_the_front_staircase() -> None:
    best = best_below(
        np.array([30.0, 32.0, 31.0]), np.array([5.0, 20.0, 10.0]), np.array([1.0, 5.0, 12.0, 50.0]), floor=-1.0
    )
    assert list(best) == [-1.0, 30.0, 31.0, 32.0]


def test_bayesian_ridge_learns_a_linear_rule_and_is_unsure_away_from_data() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3))
    y = 2.0 * x[:, 0] - 1.0 * x[:, 1] + 0.5 + rng.normal(scale=0.05, size=80)
    model = BayesianRidge(prior_precision=1e-3).fit(x, y)
    mean, sd = model.predict(np.array([[1.0, 1.0, 0.0], [30.0, -30.0, 30.0]]))
    assert mean[0] == pytest.approx(1.5, abs=0.05)
    assert math.sqrt(model.noise_var) == pytest.approx(0.05, rel=0.3)
    assert sd[1] > 10 * sd[0]


def test_features_one_hot_every_decision_and_log_latency() -> None:
    features = ArchFeatures(TINY)
    arch = TINY.reference("tiny-unet")
    row = features.encode([arch], [20.0])[0]
    assert row[-1] == pytest.approx(math.log(20.0))
    assert row[:-1].sum() == len(TINY.params_of(arch))  # one column set per decision the student makes
    shallow = Arch(widths=(4, 8), blocks=(0, 1), skips=("add",), block="plain", downsample="maxpool")
    assert features.encode([shallow], [1.0])[0][:-1].sum() == len(TINY.params_of(shallow))


def work_latency(arch: Arch) -> float:
    """A stand-in for the lookup table in these tests: milliseconds proportional to the conv work."""
    return arch.conv_work() / 50.0


def quality(arch: Arch) -> float:
    """A PSNR landscape with structure to learn: wider level 0, residual blocks and concat skips help."""
    return 28.0 + 0.1 * arch.widths[0] + (0.8 if arch.block == "residual" else 0.0) + 0.3 * arch.skips.count("concat")


def run_guided(trials: int, seed: int, budget: float | None = None) -> optuna.Study:
    context = SamplerContext(TINY, work_latency, budget)
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=SAMPLERS["guided"](seed, context))
    for _ in range(trials):
        trial = study.ask()
        arch = TINY.suggest(trial)
        trial.set_user_attr(CONSTRAINT_ATTR, 0.0)
        study.tell(trial, [quality(arch), work_latency(arch)])
    return study


def test_guided_sampler_proposes_new_students_within_the_budget() -> None:
    latencies = sorted(work_latency(a) for a in {TINY.sample(lambda n, c: c[0]), TINY.reference("tiny-unet")})
    budget = float(np.mean(latencies))
    study = run_guided(30, seed=3, budget=budget)
    archs = [TINY.sample(lambda name, choices, t=t: t.params[name]) for t in study.trials]
    assert len(set(archs)) == len(archs)  # never the same student twice
    assert all(work_latency(a) <= budget for a in archs)
    assert all(
        isinstance(t.distributions[n], optuna.distributions.CategoricalDistribution)
        for t in study.trials
        for n in t.params
    )  # trials look like those of any other sampler


def test_guided_sampler_is_reproducible_per_seed() -> None:
    first = [t.params for t in run_guided(14, seed=5).trials]
    assert first == [t.params for t in run_guided(14, seed=5).trials]
    assert first != [t.params for t in run_guided(14, seed=6).trials]


def test_guided_sampler_finds_the_front_of_a_learnable_landscape_faster_than_random() -> None:
    def volume(study: optuna.Study) -> float:
        points = np.array([t.values for t in study.trials])
        return hypervolume(points, (28.0, 40.0), ["max", "min"])

    guided = [volume(run_guided(25, seed)) for seed in range(4)]
    random = []
    for seed in range(4):
        study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=seed))
        for _ in range(25):
            trial = study.ask()
            arch = TINY.suggest(trial)
            study.tell(trial, [quality(arch), work_latency(arch)])
        random.append(volume(study))
    assert np.mean(guided) > np.mean(random)


def test_without_latency_predictions_guided_falls_back_to_tpe() -> None:
    sampler = SAMPLERS["guided"](0, SamplerContext(TINY, None))
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert not isinstance(sampler, GuidedSampler)


def test_the_search_command_offers_every_sampler() -> None:
    from nnsearch.search.config import SAMPLER_NAMES

    assert list(SAMPLERS) == list(SAMPLER_NAMES)
