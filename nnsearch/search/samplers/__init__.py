"""The samplers a study or a replay can use, by name, and what they may know about the search.

Every factory takes a seed and a `SamplerContext`: the search space, a
function predicting a student's latency before it is trained (the lookup
table) and the latency budget. Optuna's own samplers ignore the context and
learn from finished trials only (and read each trial's latency constraint,
`set_latency_constraint`, to tell feasible from infeasible ones); "guided" (`nnsearch.search.samplers.guided`) uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from nnsearch.search.samplers.base import (
    CONSTRAINT_ATTR,
    LatencyFn,
    SamplerContext,
    is_feasible,
    set_latency_constraint,
)
from nnsearch.search.samplers.guided import GuidedSampler


def _guided(seed: int, context: SamplerContext) -> optuna.samplers.BaseSampler:
    if context.latency_ms is None:  # no lookup table (latency prediction disabled): nothing to guide with
        return SAMPLERS["tpe"](seed, context)
    return GuidedSampler(context.space, context.latency_ms, seed=seed, max_latency_ms=context.max_latency_ms)


#: Samplers that predict candidates' latencies (a study fills its lookup table before they start).
PREDICTS_LATENCY = frozenset({"guided"})

SAMPLERS: dict[str, Callable[[int, SamplerContext], optuna.samplers.BaseSampler]] = {
    "guided": _guided,
    "tpe": lambda seed, context: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True),
    "nsga2": lambda seed, context: optuna.samplers.NSGAIISampler(seed=seed, population_size=8),
    "random": lambda seed, context: optuna.samplers.RandomSampler(seed=seed),
}

__all__ = [
    "CONSTRAINT_ATTR",
    "PREDICTS_LATENCY",
    "SAMPLERS",
    "LatencyFn",
    "SamplerContext",
    "is_feasible",
    "set_latency_constraint",
]
