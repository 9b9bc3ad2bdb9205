"""What every sampler may know before a trial: the space, predicted latencies, the budget; trial feasibility."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from nnsearch.latency.service import LatencyFn
from nnsearch.model.space import SearchSpace

#: Name of the trial's latency constraint (predicted ms over the budget; <= 0 means feasible), also kept
#: as a trial user attribute of that name.
CONSTRAINT_ATTR = "latency_excess_ms"
#: The system attribute holding a trial's constraints as a list: Optuna reads it besides the named ones
#: `Trial.set_constraint` writes, and optuna-dashboard (0.21) reads only it.
_CONSTRAINT_LIST_KEY = "constraints"


def set_latency_constraint(trial: optuna.Trial, excess_ms: float) -> None:
    """Tell Optuna (its samplers and the dashboard) the trial's budget excess; feasible when <= 0."""
    trial.set_constraint(CONSTRAINT_ATTR, excess_ms)
    trial.storage.set_trial_system_attr(trial._trial_id, _CONSTRAINT_LIST_KEY, [float(excess_ms)])


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial met the latency budget (its constraints, else the user attribute of older studies)."""
    constraints = trial.constraints
    if constraints:
        return all(value <= 0.0 for value in constraints.values())
    return float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0)) <= 0.0


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may know before any trial: the space, predicted latencies, the budget."""

    space: SearchSpace
    latency_ms: LatencyFn | None = None
    max_latency_ms: float | None = None
