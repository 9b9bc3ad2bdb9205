"""What every sampler may know before a trial: the space, predicted latencies, the budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace

#: A function predicting a student's latency in ms before it is trained (None: no prediction).
LatencyFn = Callable[[Arch], "float | None"]

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
