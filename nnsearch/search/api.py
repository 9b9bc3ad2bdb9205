"""Creating and loading studies from Python by name: what `nnsearch.create_study` and `nnsearch.load_study` do."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nnsearch.errors import NNSearchError
from nnsearch.model.space import SearchSpace, load_space, parse_space
from nnsearch.search.config import CONFIG_ATTR, SPACE_ATTR, LatencyConfig, StudyConfig
from nnsearch.search.early_stopping import EarlyStopRule
from nnsearch.search.multifidelity import RungSchedule
from nnsearch.search.samplers import SAMPLERS
from nnsearch.search.study import Study
from nnsearch.store.engine import Store
from nnsearch.train.distill import DistillConfig

_DISTILL = {f.name for f in dataclasses.fields(DistillConfig)} - {"seed"}
_LATENCY = {f.name for f in dataclasses.fields(LatencyConfig)}
_STUDY = {"teacher", "teacher_steps", "teacher_margin_db", "precision", "calibration_samples", "seed", "max_side",
          "max_latency_ms", "early_stop", "minimize_params", "start_from_references"}
_RUNGS = {"rungs", "reduction_factor"}
#: The keyword arguments `create_study` takes as its budget (besides results_root and verbose).
BUDGET_KEYS = sorted(_DISTILL | _LATENCY | _STUDY | _RUNGS)


def _store(db: Store | str | None) -> Store:
    return db if isinstance(db, Store) else Store(db)


def create_study(name: str, *, space: SearchSpace | str, data: str | None = None, db: Store | str | None = None,
                 sampler: str = "guided", results_root: Path | None = None, verbose: bool = True,
                 **budget: Any) -> Study:
    """A new study (or the existing one of that name, resumed) in store `db` (default store when None).

    `space` is a `SearchSpace`, a space name or a YAML path; `data` a dataset spec
    (None: the built-in data). `budget` sets any of `BUDGET_KEYS`: the
    distillation (steps, epochs, batch, crops, lr, alpha, loss), the latency
    settings (device, height, width, threads, runs, warmup, predict, measure)
    and teacher, teacher_steps, seed, max_side, max_latency_ms, early_stop
    (an `EarlyStopRule`, a margin in dB, or None), minimize_params and
    start_from_references; `rungs` (cumulative steps per rung, e.g. (300, 1200, 4800))
    with `reduction_factor` make it a multi-fidelity study (`nnsearch.search.multifidelity`;
    `steps` defaults to the first rung). The rest keep the library's defaults.
    """
    if sampler not in SAMPLERS:
        raise NNSearchError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    unknown = sorted(set(budget) - set(BUDGET_KEYS))
    if unknown:
        raise NNSearchError(f"create_study got unknown setting(s) {unknown}; known: {BUDGET_KEYS}")
    seed = int(budget.get("seed", 0))
    distill = {k: budget[k] for k in _DISTILL if k in budget}
    if "crops" in distill:
        distill["crops"] = tuple(distill["crops"])
    study = {k: budget[k] for k in _STUDY if k in budget}
    if "rungs" in budget:
        rungs = RungSchedule(tuple(budget["rungs"]), **{k: budget[k] for k in ("reduction_factor",) if k in budget})
        study["rungs"] = rungs
        distill.setdefault("steps", rungs.steps[0])
    elif "reduction_factor" in budget:
        raise NNSearchError("create_study got reduction_factor without rungs (e.g. rungs=(300, 1200, 4800))")
    if isinstance(study.get("early_stop"), (int, float)):
        study["early_stop"] = EarlyStopRule(margin_db=float(study["early_stop"]))
    config = StudyConfig(
        name=name, space=space if isinstance(space, SearchSpace) else load_space(space), data_spec=data,
        sampler=sampler, distill=DistillConfig(seed=seed, **distill),
        latency=LatencyConfig(**{k: budget[k] for k in _LATENCY if k in budget}), **study)
    return Study(config, _store(db), verbose=verbose, results_root=results_root)


def load_study(name: str, db: Store | str | None = None, *, results_root: Path | None = None,
               verbose: bool = True) -> Study:
    """The study `name` of store `db`, with the space and settings it was created with."""
    import optuna

    from nnsearch.search.optuna_setup import optuna_storage

    store = _store(db)
    storage = optuna_storage(store)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise NNSearchError(f"no study '{name}' in {store.display_url}; its studies: {sorted(names) or 'none'}")
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    if SPACE_ATTR not in attrs:
        raise NNSearchError(f"study '{name}' in {store.display_url} has no stored search space; create it again "
                            "with nnsearch.create_study(name, space=...)")
    space = parse_space(attrs[SPACE_ATTR], source=f"study '{name}' user attribute 'space'")
    config = StudyConfig.from_settings(name, space, attrs.get(CONFIG_ATTR, {}))
    return Study(config, store, verbose=verbose, results_root=results_root)
