"""The Optuna side of a study: its storage in the store, its creation or resumption."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import optuna

from nnsearch.errors import NNSearchError
from nnsearch.search.config import (
    CHANGES_ATTR,
    CONFIG_ATTR,
    SPACE_ATTR,
    HeartbeatConfig,
    StudyConfig,
    check_changes,
)
from nnsearch.search.quiet import quiet_optuna
from nnsearch.store.engine import Store
from nnsearch.store.locks import advisory_lock


def optuna_storage(store: Store, heartbeat: HeartbeatConfig = HeartbeatConfig()) -> optuna.storages.RDBStorage:
    """The Optuna storage inside the same database as the nnsearch tables, with heartbeats."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if store.url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    with quiet_optuna():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
        with advisory_lock(store, "optuna-schema"):  # Optuna's table creation is not safe to run concurrently
            return optuna.storages.RDBStorage(
                store.url,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat.interval_s,
                grace_period=heartbeat.grace_s,
                heartbeat_stale_trial_callback=retry,
            )


def open_optuna_study(
    config: StudyConfig,
    store: Store,
    sampler: optuna.samplers.BaseSampler,
    heartbeat: HeartbeatConfig = HeartbeatConfig(),
    *,
    allow_changes: Iterable[str] = (),
    load_if_exists: bool = True,
) -> optuna.Study:
    """Create the study's Optuna study or resume it; refuse a resume with another configuration or space.

    A new study stores its search space (`SPACE_ATTR`, replay reads it) and its
    configuration (`CONFIG_ATTR`, `nnsearch.load_study` and every reader of its
    latency target read it). Resuming with settings that differ from the stored
    ones is an error naming each (`check_changes`), except those in
    `allow_changes`: they replace the stored ones and are listed in `CHANGES_ATTR`.
    `load_if_exists=False` refuses to open a study that exists.
    """
    with quiet_optuna():
        storage = optuna_storage(store, heartbeat)
        if not load_if_exists and config.name in {s.study_name for s in storage.get_all_studies()}:
            refuse_existing(config.name, store)
        study = optuna.create_study(
            storage=storage,
            study_name=config.name,
            directions=list[Any](config.objectives.values()),
            sampler=sampler,
            load_if_exists=True,
        )
        if len(study.directions) != len(config.objectives):
            raise NNSearchError(
                f"study '{config.name}' in {store.display_url} has {len(study.directions)} objectives, "
                f"this run asks for {list(config.objectives)}; use another --study name"
            )
        study.set_metric_names(list(config.objectives))
        _check_space(study, config, store)
        if CONFIG_ATTR not in study.user_attrs:
            study.set_user_attr(CONFIG_ATTR, config.to_dict())
            if config.sampler.start_from_references:
                enqueue_references(study, config)
        else:
            _resume_with(study, config, allow_changes)
    return study


def refuse_existing(name: str, store: Store) -> None:
    """The error for opening a study that exists where a new one was asked for."""
    raise NNSearchError(
        f"study '{name}' already exists in {store.display_url}; resume it with "
        "load_if_exists=True or choose another name"
    )


def _resume_with(study: optuna.Study, config: StudyConfig, allow_changes: Iterable[str]) -> None:
    """Check `config` against the stored configuration; record the changes allowed."""
    stored = StudyConfig.from_dict(config.name, config.space, study.user_attrs[CONFIG_ATTR])
    changes = check_changes(stored, config, allow_changes)
    if not changes and study.user_attrs[CONFIG_ATTR] == config.to_dict():
        return
    if changes:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log = list(study.user_attrs.get(CHANGES_ATTR, []))
        log += [{"at": at, "setting": d.setting.path, "from": _json(d.stored), "to": _json(d.given)} for d in changes]
        study.set_user_attr(CHANGES_ATTR, log)
    study.set_user_attr(CONFIG_ATTR, config.to_dict())  # runtime settings and new defaults too


def _json(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str, list, dict)) else str(value)


def enqueue_references(study: optuna.Study, config: StudyConfig) -> list[str]:
    """Queue the space's reference students as the first trials of a new study.

    Called once, when the study is created; returns the labels queued. A reference the
    budget rules out is still queued: the budget check records it infeasible, as any candidate.
    """
    for reference in config.space.references:
        study.enqueue_trial(config.space.params_of(reference), user_attrs={"reference": reference.label})
    return [str(reference.label) for reference in config.space.references]


def _check_space(study: optuna.Study, config: StudyConfig, store: Store) -> None:
    mine = config.space.to_mapping()
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, mine)
    elif stored != mine:
        raise NNSearchError(
            f"study '{config.name}' in {store.display_url} was created with search space "
            f"'{stored.get('name')}' and this run gives a different one ('{mine['name']}' from "
            f"{config.space.source or 'memory'}); use the same --space or another --study name"
        )
