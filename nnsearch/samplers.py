"""The samplers a study or a replay can use, by name, and what they may know about the search.

Every factory takes a seed and a `SamplerContext`: the search space, a
function predicting a student's latency before it is trained (the lookup
table) and the latency budget. Optuna's own samplers ignore the context and
learn from finished trials only; "guided" (`nnsearch.guided_sampler`) uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from nnsearch.guided_sampler import GuidedSampler, LatencyFn
from nnsearch.space import SearchSpace

#: Trial user attribute holding the latency budget excess (<= 0 means feasible).
CONSTRAINT_ATTR = "latency_excess_ms"


def latency_constraint(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna constraint: predicted latency minus the budget (feasible when <= 0)."""
    return [float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0))]


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may know before any trial: the space, predicted latencies, the budget."""

    space: SearchSpace
    latency_ms: LatencyFn | None = None
    max_latency_ms: float | None = None


def _guided(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    if context.latency_ms is None:  # no lookup table (latency prediction disabled): nothing to guide with
        return SAMPLERS["tpe"](seed, context)
    return GuidedSampler(context.space, context.latency_ms, seed=seed, max_latency_ms=context.max_latency_ms)


#: Samplers that predict candidates' latencies (a study fills its lookup table before they start).
PREDICTS_LATENCY = frozenset({"guided"})

SAMPLERS: dict[str, Callable[[int, SamplerContext], optuna.samplers.BaseSampler]] = {
    "guided": _guided,
    "tpe": lambda seed, context: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=5, multivariate=True, constraints_func=latency_constraint),
    "nsga2": lambda seed, context: optuna.samplers.NSGAIISampler(
        seed=seed, population_size=8, constraints_func=latency_constraint),
    "random": lambda seed, context: optuna.samplers.RandomSampler(seed=seed),
}
