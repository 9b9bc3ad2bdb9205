"""A finished study as a lookup table: its recorded candidates, its search space, nearest-candidate lookup.

The table holds every distinct student a study trained to completion, with its
final PSNR and its latency on one device profile. `ReplayTable.lookup(arch)`
answers a proposed architecture with a recorded one: the same architecture
when it was recorded, else the nearest recorded candidate under a Gower-style
distance over the sampler's own parameters (see `ParameterEncoding`).

The search space a replay samples from is, in order of preference: the one the
caller gives; the mapping stored as the Optuna study's user attribute `space`
(the keys of a search-space YAML file, which every study now stores); or,
for studies recorded before that, the
categorical distributions their Optuna trials recorded (every parameter's
full choice list is stored with each trial, so once each parameter has been
suggested the space is known exactly).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import inspect, select

from nnsearch.errors import NNSearchError, SpaceError
from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace, decision_names, numeric_choices, parse_space
from nnsearch.search.samplers.base import LatencyFn
from nnsearch.store.engine import Store
from nnsearch.store.query import study_results
from nnsearch.store.schema import NN, TrialLink

#: The replay's objectives, as in a search: highest PSNR, lowest latency.
OBJECTIVES: dict[str, str] = {"psnr": "max", "latency_ms": "min"}


def recorded_studies(store: Store) -> list[str]:
    """Names of the studies with trials linked in the store."""
    return store.reading(lambda conn: sorted(conn.execute(select(TrialLink.study).distinct()).scalars()))


def _arch_json(store: Store, names: Sequence[str]) -> dict[str, str | None]:
    query = select(NN.name, NN.arch).where(NN.name.in_(list(names)))
    return store.reading(lambda conn: {name: arch for name, arch in conn.execute(query)})


def study_candidates(store: Store, study: str, device: str = "host-cpu") -> pd.DataFrame:
    """Distinct completed students of `study`: columns nn, trial, psnr, latency_ms, arch (an `Arch`).

    Rows keep the study's trial order; a student trained twice appears once (its
    first trial). Infeasible, stopped and failed trials have no PSNR and are left out.
    """
    rows = study_results(store, study, device=device)
    if rows.empty:
        known = recorded_studies(store)
        raise NNSearchError(
            f"study '{study}' has no recorded trials in {store.display_url}; recorded studies: {known or 'none'}"
        )
    done = rows[rows["state"] == "complete"].dropna(subset=list(OBJECTIVES)).drop_duplicates("nn")
    if done.empty:
        states = rows["state"].value_counts().to_dict()
        raise NNSearchError(
            f"study '{study}' has no completed trial with both PSNR and latency on device "
            f"'{device}' (trial states: {states}); nothing to replay"
        )
    stored = _arch_json(store, done["nn"].tolist())
    missing = [nn for nn in done["nn"] if not stored.get(nn)]
    if missing:
        raise NNSearchError(
            f"the store has no architecture JSON (nn.arch) for {len(missing)} student(s) of "
            f"study '{study}', e.g. {missing[:3]}; they cannot be replayed"
        )
    table = done[["nn", "trial", "psnr", "latency_ms"]].reset_index(drop=True)
    table["arch"] = [Arch.from_dict(json.loads(str(stored[nn]))) for nn in table["nn"]]
    return table


def _optuna_study(store: Store, study: str):  # -> optuna.Study | None
    """The Optuna study of that name in the store, or None (without creating Optuna's tables)."""
    import optuna

    from nnsearch.search.study import optuna_storage

    if "studies" not in store.reading(lambda conn: inspect(conn).get_table_names()):
        return None
    try:
        return optuna.load_study(study_name=study, storage=optuna_storage(store))
    except KeyError:
        return None


def recorded_space(store: Store, study: str) -> SearchSpace:
    """The search space of a study, from its Optuna user attribute `space` or its trials' distributions."""
    from nnsearch.search.study import SPACE_ATTR

    found = _optuna_study(store, study)
    hint = "; pass the space file (--space FILE)"
    if found is None:
        raise NNSearchError(
            f"study '{study}' has no Optuna study in {store.display_url}, so its search space is unknown{hint}"
        )
    stored = found.user_attrs.get(SPACE_ATTR)
    if isinstance(stored, dict):
        try:
            return parse_space(stored, source=f"study '{study}' user attribute 'space'")
        except SpaceError as exc:
            raise NNSearchError(f"study '{study}': the stored search space is invalid: {exc}{hint}") from None
    choices: dict[str, list[Any]] = {}
    for trial in found.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            choices.setdefault(name, list(getattr(dist, "choices", ())))
    return _space_from_choices(study, choices, hint)


def _space_from_choices(study: str, choices: dict[str, list[Any]], hint: str) -> SearchSpace:
    """Rebuild a space from the parameter choices of `SearchSpace.sample`."""
    if "levels" not in choices:
        raise NNSearchError(f"study '{study}' has no sampled trial to read its search space from{hint}")
    deepest = max(int(v) for v in choices["levels"])
    missing = [name for name in decision_names(deepest) if name not in choices]
    if missing:
        raise NNSearchError(
            f"study '{study}': its trials never suggested {missing}, so its search space cannot be read from them{hint}"
        )
    raw: dict[str, Any] = {
        "name": f"{study}-space",
        "levels": choices["levels"],
        "widths": [choices[f"width_{i}"] for i in range(deepest)],
        "blocks": [choices[f"blocks_{i}"] for i in range(deepest)],
        "skip": [choices[f"skip_{i}"] for i in range(deepest - 1)] or ["concat"],
        "block": choices["block"],
        "downsample": choices["downsample"],
        "global_residual": choices["global_residual"],
    }
    try:
        return parse_space(raw, source=f"trial distributions of study '{study}'")
    except SpaceError as exc:
        raise NNSearchError(f"study '{study}': the space read from its trials is invalid: {exc}{hint}") from None


@dataclass(frozen=True, eq=False)
class ParameterEncoding:
    """Architectures as vectors of the sampler's parameters, for a Gower-style distance.

    Numeric parameters (levels, width_i, blocks_i) are ordinal: the value's rank
    among the space's choices scaled to [0, 1] (values between choices are
    interpolated), so neighbouring choices are 1/(n-1) apart. Other parameters
    (skip_i, block, downsample, global_residual) are categorical: 0 when equal,
    1 otherwise. A parameter that one architecture has and the other lacks (a
    deeper level) counts 1; both lacking it counts 0. The distance is the sum.
    """

    space: SearchSpace
    names: tuple[str, ...] = field(init=False)
    ordinal: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        names = self.space.decision_names()
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "ordinal", np.array([numeric_choices(self.space.choices_of(n)) for n in names]))

    def encode(self, arch: Arch) -> np.ndarray:
        params = self.space.params_of(arch)
        return np.array([self._code(name, params[name]) if name in params else math.nan for name in self.names])

    def _code(self, name: str, value: Any) -> float:
        choices = list(self.space.choices_of(name))
        if numeric_choices(choices):
            ranks = sorted(float(c) for c in choices)
            return float(np.interp(float(value), ranks, np.linspace(0.0, 1.0, len(ranks)))) if len(ranks) > 1 else 0.0
        return float(choices.index(value)) if value in choices else -1.0

    def distances(self, table: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Distance from `query` (P,) to every row of `table` (N, P)."""
        absent_t, absent_q = np.isnan(table), np.isnan(query)
        gap = np.where(self.ordinal, np.abs(table - query), (table != query).astype(float))
        gap = np.where(absent_t | absent_q, 1.0, gap)
        return np.where(absent_t & absent_q, 0.0, gap).sum(axis=1)


@dataclass(frozen=True)
class Lookup:
    """The recorded candidate answering a proposal: its row, and whether it is the proposal itself."""

    row: int
    exact: bool
    distance: float


class ReplayTable:
    """A study's recorded candidates, answering proposed architectures by lookup."""

    def __init__(
        self, study: str, candidates: pd.DataFrame, space: SearchSpace, latency_ms: LatencyFn | None = None
    ) -> None:
        self.study = study
        self.latency_ms = latency_ms  # lookup-table prediction for any student (what a search's sampler knows)
        self.candidates = candidates.reset_index(drop=True)
        self.space = space
        self.encoding = ParameterEncoding(space)
        self._rows = {arch: i for i, arch in reversed(list(enumerate(self.candidates["arch"])))}
        self._codes = np.stack([self.encoding.encode(a) for a in self.candidates["arch"]])
        self._cache: dict[Arch, Lookup] = {}

    @classmethod
    def load(cls, store: Store, study: str, space: SearchSpace | None = None, device: str = "host-cpu") -> ReplayTable:
        """The table of `study` in `store`; its space is read from the store unless given.

        Latency predictions come from the store's lookup table for `device`
        (`nnsearch.latency.recorded.stored_predictor`).
        """
        from nnsearch.latency.recorded import stored_predictor

        candidates = study_candidates(store, study, device)
        space = space or recorded_space(store, study)
        return cls(study, candidates, space, stored_predictor(store, study, space, device))

    def __len__(self) -> int:
        return len(self.candidates)

    def lookup(self, arch: Arch) -> Lookup:
        """The recorded candidate for `arch`: itself if recorded, else the nearest (earliest trial on ties)."""
        found = self._cache.get(arch)
        if found is None:
            if arch in self._rows:
                found = Lookup(self._rows[arch], True, 0.0)
            else:
                gaps = self.distances(arch)
                row = int(np.argmin(gaps))
                found = Lookup(row, False, float(gaps[row]))
            self._cache[arch] = found
        return found

    def distances(self, arch: Arch) -> np.ndarray:
        """Parameter distance from `arch` to every recorded candidate, in row order."""
        return self.encoding.distances(self._codes, self.encoding.encode(arch))

    def values(self, row: int) -> tuple[float, float]:
        """(psnr, latency_ms) of a row."""
        record = self.candidates.iloc[row]
        return float(record["psnr"]), float(record["latency_ms"])

    def outside_space(self) -> int:
        """How many recorded candidates the space cannot propose exactly."""
        return sum(not self.space.contains(a) for a in self.candidates["arch"])


#: How a replay run answers an unrecorded proposal (see `ReplayRun`).
NEIGHBOUR_RULES = ("distinct", "nearest")


class ReplayRun:
    """The answers of one replay run (one sampler, one seed) to the architectures it proposes.

    A recorded architecture is answered by itself, and a proposal made again
    gets its first answer (a search reuses a repeated student). Any other
    proposal gets, with rule "nearest", the nearest recorded candidate, and
    with rule "distinct" the nearest one that no earlier proposal of this run
    was answered with (the nearest overall once every candidate has been
    used). "distinct" models that a new architecture, however close to one
    already trained, is a new student with a result of its own; under
    "nearest", a sampler that concentrates on a good region is told the same
    recorded student over and over for different proposals.
    """

    def __init__(self, table: ReplayTable, rule: str = "distinct") -> None:
        if rule not in NEIGHBOUR_RULES:
            raise NNSearchError(f"unknown neighbour rule {rule!r}; expected one of {list(NEIGHBOUR_RULES)}")
        self.table = table
        self.rule = rule
        self._answers: dict[Arch, Lookup] = {}
        self._used = np.zeros(len(table), dtype=bool)

    def answer(self, arch: Arch) -> Lookup:
        """The recorded candidate standing in for `arch` in this run."""
        found = self._answers.get(arch)
        if found is None:
            found = self.table.lookup(arch)
            if self.rule == "distinct" and not found.exact and self._used[found.row] and not self._used.all():
                gaps = np.where(self._used, np.inf, self.table.distances(arch))
                row = int(np.argmin(gaps))
                found = Lookup(row, False, float(gaps[row]))
            self._used[found.row] = True
            self._answers[arch] = found
        return found
