"""The "guided" sampler: model-based search that knows each candidate's latency before training it.

Latency is one of the two objectives, and unlike PSNR it costs nothing to know:
the per-layer lookup table predicts it for any architecture in a few milliseconds.
Optuna's TPE and NSGA-II cannot use that; they learn latency from finished
trials like any other objective. This sampler does, for every trial:

1. draws a pool of candidates: random students of the space plus mutants (one
   or two changed decisions) of the current Pareto set, minus every
   architecture a trial already has;
2. while fewer than `n_startup_trials` students have finished, takes a
   candidate from a latency stratum (ranked by `Arch.conv_work`, strata
   following a golden-ratio sequence so that the first trials spread over the
   whole range); afterwards
3. fits `nnsearch.search.samplers.surrogate.BayesianRidge` to the finished students' PSNR and
   scores each candidate by the hypervolume its optimistic PSNR (mean +
   `kappa` standard deviations) would add, at its latency, to the
   (PSNR, latency) front found so far (when no candidate would add any, by how
   close it comes to the front). The whole pool is scored with latencies
   estimated from `Arch.conv_work` (calibrated on the finished students), the
   `shortlist` best again with the lookup table's prediction (milliseconds
   each), and the best of those is proposed.

`kappa` = 2 was chosen on three tables of benchmarks/search_efficiency.py
(`--table-seed` 0, 1, 2): fraction of the trials needed to reach random's
final hypervolume, kappa 1: 0.45/0.29/0.53, 2: 0.34/0.32/0.35, 3:
0.37/0.23/0.50, 5: 0.35/0.19/0.40 (TPE: 0.53/0.34/0.54). The noisy
cheap-fidelity PSNR rewards exploring more than the model's own noise
estimate suggests.

Trials whose latency exceeds the study's budget never get proposed, so a
budgeted study spends no trial on an infeasible student. The choice is made in
`before_trial` and handed to Optuna parameter by parameter, so trials look
exactly like those of the other samplers (categorical parameters of
`SearchSpace.suggest`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nnsearch.analysis.pareto import nondominated_mask
from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace
from nnsearch.search.multifidelity import CONTINUES_ATTR
from nnsearch.search.samplers.base import LatencyFn, is_feasible
from nnsearch.search.samplers.surrogate import ArchFeatures, BayesianRidge

#: Returns an architecture's predicted latency in ms, or None when it cannot be predicted.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def front_improvement(
    front_psnr: np.ndarray,
    front_latency: np.ndarray,
    psnr: np.ndarray,
    latency: np.ndarray,
    reference: tuple[float, float],
) -> np.ndarray:
    """Hypervolume each (psnr, latency) candidate would add to a 2-D front (PSNR max, latency min).

    `reference` is (worst PSNR, worst latency); the front need not be filtered.
    """
    ref_psnr, ref_latency = reference
    order = np.argsort(front_latency, kind="stable")
    edges = np.append(np.asarray(front_latency, dtype=float)[order], ref_latency)
    best = np.maximum.accumulate(np.maximum(np.asarray(front_psnr, dtype=float)[order], ref_psnr))
    psnr, latency = np.asarray(psnr, dtype=float), np.asarray(latency, dtype=float)
    gain = (np.clip(edges[0], latency, ref_latency) - np.minimum(latency, ref_latency)) * np.maximum(psnr - ref_psnr, 0)
    for k, level in enumerate(best):
        lo, hi = np.maximum(latency, edges[k]), min(edges[k + 1], ref_latency)
        gain += np.maximum(hi - lo, 0.0) * np.maximum(psnr - level, 0.0)
    return gain


def best_below(front_psnr: np.ndarray, front_latency: np.ndarray, latency: np.ndarray, floor: float) -> np.ndarray:
    """For each latency, the best front PSNR at that latency or faster (`floor` when none)."""
    order = np.argsort(front_latency, kind="stable")
    edges, best = np.asarray(front_latency)[order], np.maximum.accumulate(np.asarray(front_psnr)[order])
    index = np.searchsorted(edges, latency, side="right") - 1
    return np.where(index >= 0, best[np.maximum(index, 0)], floor)


def _build_arch(space: SearchSpace, params: dict[str, Any]) -> Arch | None:
    try:
        return space.sample(lambda name, choices: params[name])
    except (KeyError, ValueError, TypeError):
        return None


@functools.lru_cache(maxsize=65536)
def _arch_of_params(space: SearchSpace, params: tuple[tuple[str, Any], ...]) -> Arch | None:
    return _build_arch(space, dict(params))


class GuidedSampler(optuna.samplers.BaseSampler):
    """Surrogate-guided sampler over a `SearchSpace` with known latencies (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        latency_ms: LatencyFn,
        *,
        seed: int | None = None,
        max_latency_ms: float | None = None,
        n_startup_trials: int = 8,
        random_candidates: int = 24,
        mutants: int = 24,
        shortlist: int = 6,
        kappa: float = 2.0,
    ) -> None:
        self.space = space
        self.latency_ms = latency_ms
        self.max_latency_ms = max_latency_ms
        self.n_startup_trials = n_startup_trials
        self.random_candidates = random_candidates
        self.mutants = mutants
        self.shortlist = shortlist
        self.kappa = kappa
        self._rng = np.random.default_rng(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._features = ArchFeatures(space)
        self._plans: dict[int, dict[str, Any]] = {}

    # Optuna's sampler interface: the whole choice is made in before_trial.
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        arch = self.propose(study.get_trials(deepcopy=False))
        if arch is not None:
            self._plans[trial.number] = self.space.params_of(arch)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        plan = self._plans.get(trial.number, {})
        if isinstance(param_distribution, CategoricalDistribution) and param_name in plan:
            value = plan[param_name]
            if any(value == c and type(value) is type(c) for c in param_distribution.choices):
                return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._plans.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    # The search itself.
    def propose(self, trials: Sequence[FrozenTrial]) -> Arch | None:
        """The next architecture to train, or None (then Optuna samples at random)."""
        seen, observed = self._history(trials)
        front = self._front(observed)
        pool = self._pool(seen, [observed[i][0] for i in front])
        if not pool:
            return self._cheapest(seen)
        if len(observed) < self.n_startup_trials:
            return self._stratified(pool, len(observed)) or self._cheapest(seen)
        archs, psnr, told = zip(*observed)
        known = self._latencies(archs, told)
        model = BayesianRidge().fit(self._features.encode(archs, known), np.array(psnr))
        front_psnr, front_latency = np.array(psnr)[front], np.array(told)[front]
        spread = float(front_psnr.max() - front_psnr.min())
        reference = (
            float(front_psnr.min()) - max(0.1 * spread, math.sqrt(model.noise_var)),
            1.1 * float(front_latency.max()),
        )

        def score(candidates: list[Arch], latency: np.ndarray) -> np.ndarray:
            mean, sd = model.predict(self._features.encode(candidates, latency))
            optimistic = mean + self.kappa * sd
            gain = front_improvement(front_psnr, front_latency, optimistic, latency, reference)
            if gain.max() > 0.0:
                return gain
            return optimistic - best_below(front_psnr, front_latency, latency, reference[0]) - 1e9

        # Stage 1: rank the whole pool with latencies estimated from the cost proxy (microseconds each).
        estimate = self._proxy_latency(pool, archs, known)
        shortlist = [pool[i] for i in np.argsort(-score(pool, estimate), kind="stable")[: self.shortlist]]
        # Stage 2: the lookup table's prediction for the shortlist only (milliseconds each).
        finalists, latency = self._predicted(shortlist)
        if not finalists:
            return self._cheapest(seen)
        return finalists[int(np.argmax(score(finalists, latency)))]

    def _history(self, trials: Sequence[FrozenTrial]) -> tuple[set[Arch], list[tuple[Arch, float, float]]]:
        """Architectures any trial holds, and (arch, psnr, latency) of finished feasible students."""
        seen: set[Arch] = set()
        observed: list[tuple[Arch, float, float]] = []
        for trial in trials:
            arch = self._arch_of(trial.params)
            if arch is None:
                continue
            seen.add(arch)
            if CONTINUES_ATTR in trial.user_attrs:  # a multi-fidelity continuation: a longer training, not a sample
                continue
            values = trial.values if trial.state == TrialState.COMPLETE else None
            feasible = is_feasible(trial)
            if values and feasible and len(values) >= 2 and all(map(math.isfinite, values[:2])) and values[0] > 0:
                observed.append((arch, float(values[0]), float(values[1])))
        return seen, observed

    def _arch_of(self, params: dict[str, Any]) -> Arch | None:
        """The trial's architecture (cached across sampler instances: the history is re-read every trial)."""
        try:
            return _arch_of_params(self.space, tuple(sorted(params.items())))
        except TypeError:  # an unhashable parameter value: build it uncached
            return _build_arch(self.space, params)

    @staticmethod
    def _front(observed: list[tuple[Arch, float, float]]) -> np.ndarray:
        if not observed:
            return np.array([], dtype=int)
        points = np.array([(-psnr, latency) for _, psnr, latency in observed])
        return np.flatnonzero(nondominated_mask(points))

    def _pool(self, seen: set[Arch], front: list[Arch]) -> list[Arch]:
        """Random students and mutants of the front that no trial has yet."""
        drawn = [self._random_arch() for _ in range(self.random_candidates)]
        if front:
            drawn += [self._mutant(front[self._rng.integers(len(front))]) for _ in range(self.mutants)]
        return [arch for arch in dict.fromkeys(drawn) if arch not in seen]

    def _cheapest(self, seen: set[Arch]) -> Arch | None:
        """When no drawn candidate fits the budget: a new one among the space's fastest students and their mutants."""
        fastest = self.space.fastest_candidates()
        drawn = fastest + [self._mutant(fastest[self._rng.integers(len(fastest))]) for _ in range(self.mutants)]
        fresh = [arch for arch in dict.fromkeys(drawn) if arch not in seen]
        found, latency = self._predicted(fresh)
        return found[int(np.argmin(latency))] if found else None

    def _predicted(self, candidates: Sequence[Arch]) -> tuple[list[Arch], np.ndarray]:
        """The candidates the lookup table can predict and the budget allows, with their predictions."""
        kept, latency = [], []
        for arch in candidates:
            ms = self.latency_ms(arch)
            if ms is None or not math.isfinite(ms) or (self.max_latency_ms is not None and ms > self.max_latency_ms):
                continue
            kept.append(arch)
            latency.append(ms)
        return kept, np.array(latency)

    @staticmethod
    def _proxy_latency(candidates: Sequence[Arch], archs: Sequence[Arch], known: Sequence[float]) -> np.ndarray:
        """Latency estimates from `Arch.conv_work`, calibrated on students with known latency (log-log fit)."""
        work = np.log([a.conv_work() for a in candidates])
        reference = np.log([a.conv_work() for a in archs])
        if len(archs) < 2 or np.ptp(reference) < 1e-9:
            return np.exp(work)
        slope, intercept = np.polyfit(reference, np.log(np.maximum(known, 1e-9)), 1)
        return np.exp(intercept + slope * work)

    def _latencies(self, archs: Sequence[Arch], told: Sequence[float]) -> list[float]:
        """Predicted latency of finished students (their recorded latency where it cannot be predicted)."""
        predicted = [self.latency_ms(a) for a in archs]
        return [p if p is not None and math.isfinite(p) else t for p, t in zip(predicted, told)]

    def _pick(self, choices: Sequence[Any]) -> Any:
        return choices[int(self._rng.integers(len(choices)))]

    def _random_arch(self) -> Arch:
        return self.space.sample(lambda name, choices: self._pick(choices))

    def _mutant(self, arch: Arch) -> Arch:
        """`arch` with one or two of its decisions changed to another choice."""
        params = self.space.params_of(arch)
        names = [n for n in params if len(self.space.choices_of(n)) > 1]
        if not names:
            return self._random_arch()
        for name in self._rng.choice(names, size=min(len(names), int(self._rng.integers(1, 3))), replace=False):
            params[name] = self._pick([c for c in self.space.choices_of(name) if c != params[name]])
        return self.space.sample(
            lambda name, choices: params[name] if params.get(name) in choices else self._pick(choices)
        )

    def _stratified(self, pool: list[Arch], done: int) -> Arch | None:
        """A candidate from latency stratum `done` (a golden-ratio sequence over the pool's cost range).

        Candidates are ranked by `Arch.conv_work`; the first one in the stratum
        (then above it, then below) that the lookup table predicts within the
        budget is taken.
        """
        order = np.argsort([a.conv_work() for a in pool], kind="stable")
        start = int(((done * _GOLDEN) % 1.0) * len(order))
        start += int(self._rng.integers(max(1, len(order) // max(self.n_startup_trials, 1))))
        start = min(start, len(order) - 1)
        for index in list(order[start:]) + list(order[:start][::-1]):
            found, _ = self._predicted([pool[index]])
            if found:
                return found[0]
        return None
