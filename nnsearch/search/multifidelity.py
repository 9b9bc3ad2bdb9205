"""Multi-fidelity search: candidates train in rungs, and only the most promising are continued (ASHA-style).

A `RungSchedule` gives cumulative distillation steps per rung (e.g. 300, 1200,
4800) and a reduction factor eta (e.g. 3). Every candidate trains the first
rung. A candidate is continued to the next rung, from its own weights, as soon
as it ranks among the top floor(n / eta) of the n students recorded at its rung
so far (asynchronous successive halving: no worker waits for a rung to fill).

Ranking is multi-objective: non-dominated sorting of (PSNR, latency[, params]),
and within one front the hypervolume each student alone contributes (the
student whose removal loses the most volume first), with the trial number as
the last tie-break. Dominance decides what it can without any scale or
reference point; the hypervolume contribution only orders students that
dominance cannot tell apart, and prefers those that fill a gap of the front
over near-duplicates of a neighbour.

A continuation is an Optuna trial of its own, enqueued with the student's
parameters and the user attributes `continues` (the student's trial number)
and `rung`, so it is claimed, heart-beaten, retried after a lost worker and
failed on Ctrl-C exactly like a candidate. Its rows are recorded under the
student's trial number at the new rung (`trial_link.rung`, `stat.rung`), with
a hyperparameter set of its own that names the set it continued. "N finished
trials" counts candidates only; a study is done when N candidates finished and
no promotion is due or running.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from nnsearch.analysis.pareto import hypervolume, nondominated_mask
from nnsearch.errors import NNSearchError
from nnsearch.search.outcomes import is_recorded_failure
from nnsearch.store.hashing import prm_uid
from nnsearch.train.distill import DistillConfig

#: Trial user attribute of a continuation: the trial number of the student it continues.
CONTINUES_ATTR = "continues"
#: Trial user attribute of a continuation: the rung it trains the student to.
RUNG_ATTR = "rung"
#: A continuation lost this often (killed worker, Ctrl-C) is given up.
MAX_ATTEMPTS = 3
#: Recorded states of a rung's members (infeasible students were never trained, diverged ones failed).
MEMBER_STATES = ("complete", "stopped")


@dataclass(frozen=True)
class RungSchedule:
    """Cumulative distillation steps per rung and the reduction factor between rungs."""

    steps: tuple[int, ...]
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        if (
            len(steps) < 2
            or any(not isinstance(s, int) or s < 1 for s in steps)
            or any(b <= a for a, b in itertools.pairwise(steps))
        ):
            raise NNSearchError(
                f"rungs must be at least two increasing step counts such as 300,1200,4800, "
                f"got {','.join(map(str, steps))}"
            )
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 2:
            raise NNSearchError(f"the reduction factor must be an integer >= 2, got {self.reduction_factor}")

    @property
    def top(self) -> int:
        """The index of the highest rung."""
        return len(self.steps) - 1

    def segment(self, base: DistillConfig, rung: int) -> DistillConfig:
        """The distillation that takes a student from rung - 1 to `rung` (rung 0: from scratch).

        It trains the rung's added steps on a batch plan of its own (seed + rung), with
        the learning rate annealed again from `base.lr` (a warm restart of the cosine).
        """
        if rung == 0:
            return base
        return dataclasses.replace(base, steps=self.steps[rung] - self.steps[rung - 1], seed=base.seed + rung)

    def hyperparameters(self, base: DistillConfig, rung: int) -> dict[str, Any]:
        """The recorded hyperparameter set of a student at `rung`.

        Rung 0 is `base`'s own set (the same training as a single-fidelity study of
        that budget); a higher rung records its cumulative steps and epochs, its
        number and the uid of the set it continued (so each rung's rows, weights and
        link are its own, and the lineage can be followed).
        """
        prm = base.hyperparameters()
        for r in range(1, rung + 1):
            prm = {
                **base.hyperparameters(),
                "steps": self.steps[r],
                "epochs": base.epochs * (r + 1),
                "rung": r,
                "continues": prm_uid(prm),
            }
        return prm

    def total_steps(self, counts: Mapping[int, int]) -> int:
        """Distillation steps spent on `counts` (rung -> students trained to it)."""
        return sum(n * (self.steps[r] - (self.steps[r - 1] if r else 0)) for r, n in counts.items())


@dataclass(frozen=True)
class Promotion:
    """A student due to be continued: its trial, the rung to train it to, and its parameters."""

    trial: int
    rung: int
    params: dict[str, Any]

    def user_attrs(self) -> dict[str, Any]:
        return {CONTINUES_ATTR: self.trial, RUNG_ATTR: self.rung}


def is_continuation(trial: optuna.trial.FrozenTrial | optuna.Trial) -> bool:
    """Whether an Optuna trial continues another trial's student to a higher rung."""
    return CONTINUES_ATTR in trial.user_attrs


def promotion_order(members: pd.DataFrame, objectives: Mapping[str, str]) -> list[int]:
    """Trial numbers of `members`, most promising first (see the module docstring).

    `objectives`: column -> 'max' or 'min'. Rows with a missing objective come last.
    """
    if members.empty:
        return []
    signs = np.array([-1.0 if sense == "max" else 1.0 for sense in objectives.values()])
    points = members[list(objectives)].to_numpy(dtype=float) * signs
    trials = members["trial"].to_numpy()
    complete = ~np.isnan(points).any(axis=1)
    remaining = np.flatnonzero(complete)
    order: list[int] = []
    mins = ["min"] * len(signs)
    if len(remaining):  # the nadir of the members pushed 10% of the range further: every member adds volume
        worst, best = points[remaining].max(axis=0), points[remaining].min(axis=0)
        reference = worst + 0.1 * np.where(worst > best, worst - best, 1.0)
    while len(remaining):
        front = remaining[nondominated_mask(points[remaining])]
        whole = hypervolume(points[front], reference, mins)
        contribution = {i: whole - hypervolume(points[front[front != i]], reference, mins) for i in front}
        order += [int(trials[i]) for i in sorted(front, key=lambda i: (-contribution[i], trials[i]))]
        remaining = np.setdiff1d(remaining, front)
    order += sorted(int(t) for t in trials[~complete])
    return order


def rung_members(rung_results: pd.DataFrame, rung: int) -> pd.DataFrame:
    """The students recorded at `rung` (complete or stopped), one per architecture (its first trial)."""
    rows = rung_results[(rung_results["rung"] == rung) & rung_results["state"].isin(MEMBER_STATES)]
    return rows.sort_values("trial", kind="stable").drop_duplicates("nn")


def next_promotion(
    study: optuna.Study, rung_results: pd.DataFrame, schedule: RungSchedule, objectives: Mapping[str, str]
) -> Promotion | None:
    """The next student to continue, highest rung first, or None when none is due now.

    A student of rung k is due when it ranks among the top floor(n_k / eta) of the n_k
    students recorded at rung k, is complete, and has no continuation to rung k + 1
    that is waiting, running, finished, or lost `MAX_ATTEMPTS` times already.
    """
    trials = study.get_trials(deepcopy=False)
    taken = _taken(trials)
    params = {t.number: t.params for t in trials if not is_continuation(t)}
    for rung in reversed(range(schedule.top)):
        members = rung_members(rung_results, rung)
        quota = len(members) // schedule.reduction_factor
        if quota == 0:
            continue
        complete = members[members["state"] == "complete"]
        for number in promotion_order(members.assign(**_stopped_last(members, objectives)), objectives)[:quota]:
            if number in set(complete["trial"]) and (number, rung + 1) not in taken and number in params:
                return Promotion(number, rung + 1, dict(params[number]))
    return None


def _stopped_last(members: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, Any]:
    """Objective columns with a stopped student's values blanked (it ranks after every complete one)."""
    stopped = members["state"] != "complete"
    return {column: members[column].where(~stopped) for column in objectives}


def _taken(trials: Sequence[optuna.trial.FrozenTrial]) -> set[tuple[int, int]]:
    """(trial, rung) continuations that exist (waiting, running, finished) or were lost too often."""
    taken: set[tuple[int, int]] = set()
    lost: dict[tuple[int, int], int] = {}
    for trial in trials:
        if not is_continuation(trial):
            continue
        key = (int(trial.user_attrs[CONTINUES_ATTR]), int(trial.user_attrs[RUNG_ATTR]))
        if trial.state == TrialState.FAIL and not is_recorded_failure(trial):
            lost[key] = lost.get(key, 0) + 1
        else:
            taken.add(key)
    return taken | {key for key, count in lost.items() if count >= MAX_ATTEMPTS}


def objective_senses(objectives: Mapping[str, str]) -> dict[str, str]:
    """Optuna directions ('maximize', 'minimize') as pareto senses ('max', 'min')."""
    return {name: direction[:3] for name, direction in objectives.items()}
