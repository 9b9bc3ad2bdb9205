"""Replay: compare search strategies on a finished study used as a tabular benchmark.

A sampler (guided, tpe, nsga2, random: the factories of `nnsearch.search.samplers.SAMPLERS`)
runs a fresh in-memory Optuna study for each seed. Every trial samples an
architecture through the study's search space (`SearchSpace.suggest`, as a
search does), so the sampler sees the same parameters and choices as in a
real search, and is answered by a lookup in the recorded
table instead of training.

Unrecorded proposals: a finished study holds a few hundred of the space's
millions of students (about 400 million in litedenoise), so almost every
proposal of any sampler is unrecorded. Such a proposal is answered by a
recorded candidate close to it (a Gower-style distance over the sampler's
parameters, see `nnsearch.replay.table.ParameterEncoding`; ties go to the
earliest trial): the sampler is told that candidate's objective values for
its own proposal, and that candidate is what enters the front. Every trial
thus costs one trial and returns a real, recorded result, a sampler that
models the objective can exploit the structure it learns, and no sampler can
reach a student that was never trained. Which close candidate is the rule
(`nnsearch.replay.table.ReplayRun`):

- "distinct" (default): the nearest candidate that no other proposal of the
  run has been answered with. In a real search every new architecture is a
  new student with its own result, however close it lies to one already
  trained; the replay keeps that property, and a sampler that concentrates
  on a good region gets the other recorded students of that region.
- "nearest": the nearest candidate, even if other proposals got it already.
  On the benchmark table TPE then spent over half of its trials being told
  results it had already seen (36-71 distinct students in 150 trials, random
  116), which penalises concentration itself rather than where a sampler
  looks.

Rejecting unrecorded proposals instead would leave nearly every trial empty,
and restricting Optuna to the recorded set is not possible for the space's
conditional parameters. (Telling the sampler the recorded candidate's
parameters instead of its proposal's made no material difference on the
benchmark table.) The fraction of exact hits is reported with the results.

A replay runs the study's own trial loop (`nnsearch.search.trial_loop.TrialLoop`)
with `RecordedTrial` as its trial backend in place of training. Each
trial's latency constraint (`Trial.set_constraint`) is 0: every recorded
candidate is feasible, only completed students are in the table.

Quality is the hypervolume of the (PSNR, latency) front of the candidates
seen so far, after every trial, w.r.t. one reference point fixed per study.
By default it is the nadir of the whole table's Pareto front (its lowest PSNR
and its highest latency), pushed 10% of the front's range further
(`nnsearch.analysis.pareto.default_reference` over the front). The nadir of all rows
would be dominated by outliers (a student of seconds, one of 5 dB): almost
any front would then cover nearly all of the volume and the samplers would
be hard to tell apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nnsearch.analysis.pareto import default_reference, hypervolume, nondominated_mask, pareto
from nnsearch.common.progress import progress_bar
from nnsearch.errors import NNSearchError
from nnsearch.replay.table import OBJECTIVES, ReplayRun, ReplayTable

if TYPE_CHECKING:
    from nnsearch.model.space import SearchSpace
    from nnsearch.store.engine import Store

#: Fractions of the trial budget at which the summary reports hypervolume.
FRACTIONS = (0.25, 0.5, 1.0)
#: First replay seed. A study seeds its sampler with study seed x 1,000,003 + trial number (0, 1, 2, ...
#: for the default seed 0), and a replay run seeded like a recorded trial would start with that trial's
#: student; seeds from 1000 on avoid this for studies of fewer than 1000 trials.
FIRST_SEED = 1000


def check_samplers(names: Sequence[str]) -> list[str]:
    """The sampler names, validated against `nnsearch.search.study.SAMPLERS`."""
    from nnsearch.search.samplers import SAMPLERS

    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown or not names:
        raise NNSearchError(f"unknown sampler(s) {unknown or names}; expected one or more of {sorted(SAMPLERS)}")
    return list(dict.fromkeys(names))


def parse_reference(text: str) -> dict[str, float]:
    """'PSNR,LATENCY' (e.g. '20,500') -> {'psnr': 20.0, 'latency_ms': 500.0}."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != len(OBJECTIVES) or not all(map(math.isfinite, values)):
        raise NNSearchError(f"reference must look like PSNR,LATENCY_MS (e.g. 20,500), got {text!r}")
    return dict(zip(OBJECTIVES, values))


class FrontTracker:
    """Hypervolume of a growing point set, recomputed only when the front changes."""

    def __init__(self, reference: Mapping[str, float]) -> None:
        self.reference = [reference[c] for c in OBJECTIVES]
        self.senses = list(OBJECTIVES.values())
        self.signs = np.array([1.0 if s == "min" else -1.0 for s in self.senses])
        self.front = np.empty((0, len(OBJECTIVES)))
        self.volume = 0.0

    def add(self, point: Sequence[float]) -> float:
        """Add one (psnr, latency_ms) point; return the hypervolume so far."""
        p = np.asarray(point, dtype=float)
        minimised = self.front * self.signs
        if len(self.front) and np.any(np.all(minimised <= p * self.signs, axis=1)):
            return self.volume  # dominated by (or equal to) a front point: nothing changes
        merged = np.vstack([self.front, p])
        self.front = merged[nondominated_mask(merged * self.signs)]
        self.volume = hypervolume(self.front, self.reference, self.senses)
        return self.volume


@dataclass
class ReplayResult:
    """Per-trial records of every (sampler, seed) run and the hypervolume curves."""

    study: str
    trials: int
    reference: dict[str, float]
    table_volume: float
    candidates: int
    runs: pd.DataFrame  # sampler, seed, trial, nn, exact, distance, psnr, latency_ms, hypervolume
    rule: str = "distinct"  # how unrecorded proposals were answered (replay_table.NEIGHBOUR_RULES)

    def curves(self, sampler: str) -> np.ndarray:
        """Hypervolume after each trial, one row per seed: shape (seeds, trials)."""
        rows = self.runs[self.runs["sampler"] == sampler]
        if rows.empty:
            raise NNSearchError(f"sampler '{sampler}' was not replayed; replayed: {self.samplers}")
        return rows.pivot(index="seed", columns="trial", values="hypervolume").to_numpy(float)

    @property
    def samplers(self) -> list[str]:
        return list(dict.fromkeys(self.runs["sampler"]))

    def at_fraction(self, sampler: str, fraction: float) -> np.ndarray:
        """Per-seed hypervolume after `fraction` of the trials (rounded up, at least one trial)."""
        return self.curves(sampler)[:, max(1, math.ceil(fraction * self.trials)) - 1]

    def trials_to_reach(self, sampler: str, target: float) -> float:
        """Fraction of the trials the sampler's mean curve needs to reach `target` (inf if it never does)."""
        mean = self.curves(sampler).mean(axis=0)
        hits = np.flatnonzero(mean >= target - 1e-12 * max(abs(target), 1.0))
        return float(hits[0] + 1) / self.trials if len(hits) else math.inf

    def summary(self) -> pd.DataFrame:
        """One row per sampler: mean and standard deviation over seeds at each fraction, exact-hit rate."""
        rows = []
        for sampler in self.samplers:
            row: dict[str, object] = {"sampler": sampler, "seeds": len(self.curves(sampler))}
            for fraction in FRACTIONS:
                values = self.at_fraction(sampler, fraction)
                row[f"hv_{int(fraction * 100)}_mean"] = float(values.mean())
                row[f"hv_{int(fraction * 100)}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            mine = self.runs[self.runs["sampler"] == sampler]
            row["exact_hits"] = float(mine["exact"].mean())
            row["distinct_candidates"] = float(mine.groupby("seed")["nn"].nunique().mean())
            rows.append(row)
        return pd.DataFrame(rows)

    def table_text(self) -> str:
        """The summary as an aligned text table: mean +- std per fraction of the trials."""
        summary = self.summary()
        shown = pd.DataFrame({"sampler": summary["sampler"], "seeds": summary["seeds"]})
        for fraction in FRACTIONS:
            key, trials = f"hv_{int(fraction * 100)}", max(1, math.ceil(fraction * self.trials))
            shown[f"HV@{int(fraction * 100)}% ({trials} trials)"] = [
                f"{m:.5g} +- {s:.2g}" for m, s in zip(summary[f"{key}_mean"], summary[f"{key}_std"])
            ]
        shown["exact hits"] = [f"{v:.0%}" for v in summary["exact_hits"]]
        shown["distinct"] = [f"{v:.1f}" for v in summary["distinct_candidates"]]
        return shown.to_string(index=False)


def table_reference(table: ReplayTable) -> dict[str, float]:
    """The default reference point: the nadir of the table's Pareto front, pushed 10% of its range further."""
    return default_reference(pareto(table.candidates, OBJECTIVES), OBJECTIVES)


class RecordedTrial:
    """The replay's trial backend for the study trial loop: a recorded table in place of training.

    Each trial samples an architecture through the table's space (as a search
    does), is answered by `ReplayRun` under `rule`, and reports that recorded
    student's values (feasible: only completed students are in the table). One
    record per trial, with the front's hypervolume so far, is kept in `records`.
    """

    def __init__(
        self, table: ReplayTable, sampler: str, seed: int, tracker: FrontTracker, *, rule: str = "distinct"
    ) -> None:
        self.table = table
        self.sampler = sampler
        self.seed = seed
        self.tracker = tracker
        self.answers = ReplayRun(table, rule)
        self.records: list[dict[str, object]] = []

    def run(self, trial):  # (optuna.Trial) -> TrialOutcome
        from nnsearch.search.candidate_trial import TrialOutcome
        from nnsearch.search.samplers import set_latency_constraint

        proposal = self.table.space.suggest(trial)
        found = self.answers.answer(proposal)
        psnr, latency = self.table.values(found.row)
        set_latency_constraint(trial, 0.0)
        self.records.append(
            {
                "sampler": self.sampler,
                "seed": self.seed,
                "trial": trial.number + 1,
                "nn": self.table.candidates.at[found.row, "nn"],
                "exact": found.exact,
                "distance": found.distance,
                "psnr": psnr,
                "latency_ms": latency,
                "hypervolume": self.tracker.add((psnr, latency)),
            }
        )
        return TrialOutcome(trial.number, proposal, "complete", psnr, latency)


def run_sampler(
    table: ReplayTable,
    sampler: str,
    seed: int,
    trials: int,
    tracker: FrontTracker,
    *,
    rule: str = "distinct",
    verbose: bool = True,
) -> list[dict[str, object]]:
    """One replay run: the study trial loop on a fresh in-memory Optuna study, answered by `table` under `rule`."""
    import optuna

    from nnsearch.search.config import DIRECTIONS
    from nnsearch.search.quiet import quiet_optuna
    from nnsearch.search.samplers import SAMPLERS, SamplerContext
    from nnsearch.search.trial_loop import TrialLoop

    context = SamplerContext(table.space, table.latency_ms)
    with quiet_optuna():
        study = optuna.create_study(directions=list[Any](DIRECTIONS), sampler=SAMPLERS[sampler](seed, context))
    backend = RecordedTrial(table, sampler, seed, tracker, rule=rule)
    with progress_bar(total=trials, desc=f"replay {sampler} seed {seed}", enabled=verbose) as bar:
        TrialLoop(study, backend.run, list(OBJECTIVES), after_trial=lambda _outcome: bar.update(1)).run(trials)
    return backend.records


def replay(
    table: ReplayTable,
    samplers: Sequence[str] = ("guided", "tpe", "nsga2", "random"),
    trials: int | None = None,
    seeds: int = 5,
    reference: Mapping[str, float] | None = None,
    *,
    first_seed: int | None = None,
    rule: str = "distinct",
    verbose: bool = True,
) -> ReplayResult:
    """Run each sampler `seeds` times (seeds first_seed, first_seed+1, ...) for `trials` trials against `table`.

    `trials` defaults to the table's size, `first_seed` to `FIRST_SEED`; `rule` says how
    unrecorded proposals are answered (`nnsearch.replay.table.ReplayRun`). One sampler
    object serves a whole run.
    """
    samplers = check_samplers(samplers)
    trials = len(table) if trials is None else int(trials)
    if trials <= 0:
        raise NNSearchError(f"the number of trials must be positive, got {trials}")
    if seeds <= 0:
        raise NNSearchError(f"the number of seeds must be positive, got {seeds}")
    columns = table.candidates[list(OBJECTIVES)]
    reference = dict(reference or table_reference(table))
    first = FIRST_SEED if first_seed is None else first_seed
    records: list[dict[str, object]] = []
    for sampler in samplers:
        for seed in range(first, first + seeds):
            records += run_sampler(table, sampler, seed, trials, FrontTracker(reference), rule=rule, verbose=verbose)
    volume = hypervolume(columns.to_numpy(float), [reference[c] for c in OBJECTIVES], list(OBJECTIVES.values()))
    return ReplayResult(table.study, trials, reference, volume, len(table), pd.DataFrame(records), rule)


def write_outputs(result: ReplayResult, out: Path) -> list[Path]:
    """`runs.csv` (every trial), `summary.csv` and `hypervolume.png` (mean with a min-max band) in `out`."""
    from nnsearch.analysis.plots import _save, plt

    out.mkdir(parents=True, exist_ok=True)
    runs, summary = out / "runs.csv", out / "summary.csv"
    result.runs.to_csv(runs, index=False)
    result.summary().to_csv(summary, index=False)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    steps = np.arange(1, result.trials + 1)
    for sampler in result.samplers:
        curves = result.curves(sampler)
        (line,) = ax.plot(steps, curves.mean(axis=0), linewidth=1.6, label=f"{sampler} (mean of {len(curves)} seeds)")
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.18)
    ax.axhline(result.table_volume, color="#555555", linestyle="--", linewidth=1, label="whole table")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (PSNR dB x latency ms)")
    ax.legend(loc="lower right", fontsize=8)
    ref = ", ".join(f"{c}={v:.4g}" for c, v in result.reference.items())
    plot = _save(
        fig, ax, out / "hypervolume.png", f"replay of '{result.study}': mean, band min-max over seeds\nreference {ref}"
    )
    return [runs, summary, plot]


def replay_study(
    study: str,
    db: Store | str | None = None,
    *,
    samplers: Sequence[str] = ("guided", "tpe", "nsga2", "random"),
    trials: int | None = None,
    seeds: int = 5,
    space: SearchSpace | str | None = None,
    device: str = "host-cpu",
    reference: Mapping[str, float] | None = None,
    first_seed: int | None = None,
    rule: str = "distinct",
    verbose: bool = False,
) -> ReplayResult:
    """Replay the finished study `study` of store `db` (`ReplayTable.load`, then `replay`); what `nnsearch.replay` does."""
    from nnsearch.model.space import load_space
    from nnsearch.store.engine import Store

    store = db if isinstance(db, Store) else Store(db, create=False)
    if isinstance(space, str):
        space = load_space(space)
    table = ReplayTable.load(store, study, space=space, device=device)
    return replay(
        table,
        samplers,
        trials=trials,
        seeds=seeds,
        reference=reference,
        first_seed=first_seed,
        rule=rule,
        verbose=verbose,
    )
