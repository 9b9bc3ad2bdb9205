"""The Optuna side of a study: its storage in the store, its creation or resumption."""

from __future__ import annotations

from typing import Any

import optuna

from nnsearch.errors import NNSearchError
from nnsearch.store.locks import advisory_lock
from nnsearch.search.config import CONFIG_ATTR, PRECISION_ATTR, SPACE_ATTR, HeartbeatConfig, StudyConfig
from nnsearch.search.quiet import quiet_optuna
from nnsearch.store.engine import Store


def optuna_storage(store: Store, heartbeat: HeartbeatConfig = HeartbeatConfig()) -> optuna.storages.RDBStorage:
    """The Optuna storage inside the same database as the nnsearch tables, with heartbeats."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if store.url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    with quiet_optuna():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
        with advisory_lock(store, "optuna-schema"):  # Optuna's table creation is not safe to run concurrently
            return optuna.storages.RDBStorage(store.url, engine_kwargs=kwargs, heartbeat_interval=heartbeat.interval_s,
                                              grace_period=heartbeat.grace_s, heartbeat_stale_trial_callback=retry)


def open_optuna_study(config: StudyConfig, store: Store, sampler: optuna.samplers.BaseSampler,
                      heartbeat: HeartbeatConfig = HeartbeatConfig()) -> optuna.Study:
    """Create the study's Optuna study or resume it; refuse a resume with other objectives or another space.

    A new study stores its search space (`SPACE_ATTR`, replay reads it) and its
    other settings (`CONFIG_ATTR`, `nnsearch.load_study` reads them).
    """
    with quiet_optuna():
        study = optuna.create_study(storage=optuna_storage(store, heartbeat), study_name=config.name,
                                    directions=list(config.objectives.values()), sampler=sampler, load_if_exists=True)
        if len(study.directions) != len(config.objectives):
            raise NNSearchError(
                f"study '{config.name}' in {store.display_url} has {len(study.directions)} objectives, "
                f"this run asks for {list(config.objectives)}; use another --study name")
        study.set_metric_names(list(config.objectives))
        _check_space(study, config, store)
        _check_precision(study, config, store)
        if CONFIG_ATTR not in study.user_attrs:
            study.set_user_attr(CONFIG_ATTR, config.settings())
            if config.start_from_references:
                enqueue_references(study, config)
    return study


def enqueue_references(study: optuna.Study, config: StudyConfig) -> list[str]:
    """Queue the space's reference students as the first trials of a new study.

    Called once, when the study is created; returns the labels queued. A reference the
    budget rules out is still queued: the budget check records it infeasible, as any candidate.
    """
    for reference in config.space.references:
        study.enqueue_trial(config.space.params_of(reference), user_attrs={"reference": reference.label})
    return [reference.label for reference in config.space.references]


def _check_precision(study: optuna.Study, config: StudyConfig, store: Store) -> None:
    """Store the study's precision with it; refuse resuming it at another precision."""
    stored = study.user_attrs.get(PRECISION_ATTR)
    if stored is None:
        study.set_user_attr(PRECISION_ATTR, config.precision)
    elif stored != config.precision:
        raise NNSearchError(f"study '{config.name}' in {store.display_url} searches at precision {stored}, "
                            f"this run asks for {config.precision}; use --precision {stored} or another --study name")


def _check_space(study: optuna.Study, config: StudyConfig, store: Store) -> None:
    mine = config.space.to_mapping()
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, mine)
    elif stored != mine:
        raise NNSearchError(
            f"study '{config.name}' in {store.display_url} was created with search space "
            f"'{stored.get('name')}' and this run gives a different one ('{mine['name']}' from "
            f"{config.space.source or 'memory'}); use the same --space or another --study name")
