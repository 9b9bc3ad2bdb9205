"""Creating and loading studies from Python by name: what `nnsearch.create_study` and `nnsearch.load_study` do."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nnsearch.errors import NNSearchError
from nnsearch.model.space import SearchSpace, load_space, parse_space
from nnsearch.search.config import CONFIG_ATTR, SPACE_ATTR, StudyConfig
from nnsearch.search.study import Study
from nnsearch.store.engine import Store


def _store(db: Store | str | None) -> Store:
    return db if isinstance(db, Store) else Store(db)


def create_study(
    name: str,
    config: StudyConfig | None = None,
    *,
    space: SearchSpace | str | None = None,
    db: Store | str | None = None,
    load_if_exists: bool = True,
    allow_changes: Iterable[str] = (),
    results_root: Path | None = None,
    verbose: bool = True,
    **settings: Any,
) -> Study:
    """A new study `name` in store `db` (default store when None), or the existing one resumed.

    `config`: the whole `StudyConfig` (its name is replaced by `name`). Without
    it, an existing study starts from its stored configuration and a new one
    from the defaults. `space` (a `SearchSpace`, a space name or a YAML path;
    needed for a new study without `config`) and `settings` (keyword shortcuts
    of `nnsearch.search.config.SETTINGS` or dotted paths, e.g. `steps=300`,
    `data="clean:photos/"`, `teacher_steps=500`, `start_from_references=True`)
    are set on top. Resuming with settings that differ from the stored ones
    raises an error naming each, unless they are named in `allow_changes`
    (the change is recorded with the study). `load_if_exists=False` refuses a
    study that exists.
    """
    store = _store(db)
    stored = stored_config(name, store)
    if stored is not None and not load_if_exists:
        from nnsearch.search.optuna_setup import refuse_existing

        refuse_existing(name, store)
    if config is None and stored is not None:
        config = stored
    elif config is None:
        if space is None:
            raise NNSearchError(
                f"study '{name}' is new: give its search space (space='litedenoise', a YAML path "
                "or a SearchSpace) or a whole config=StudyConfig(...)"
            )
        config = StudyConfig(name=name, space=_space(space))
    if space is not None:
        config = dataclasses.replace(config, space=_space(space))
    config = dataclasses.replace(config, name=name).replace(**settings)
    return Study(
        config,
        store,
        verbose=verbose,
        results_root=results_root,
        allow_changes=allow_changes,
        load_if_exists=load_if_exists,
    )


def load_study(
    name: str, db: Store | str | None = None, *, results_root: Path | None = None, verbose: bool = True
) -> Study:
    """The study `name` of store `db`, with the space and settings it was created with."""
    store = _store(db)
    config = stored_config(name, store)
    if config is None:
        raise NNSearchError(f"no study '{name}' in {store.display_url}; its studies: {study_names(store) or 'none'}")
    return Study(config, store, verbose=verbose, results_root=results_root)


def study_names(store: Store) -> list[str]:
    """The names of the store's studies, sorted."""
    from nnsearch.search.optuna_setup import optuna_storage

    return sorted(s.study_name for s in optuna_storage(store).get_all_studies())


def stored_config(name: str, store: Store) -> StudyConfig | None:
    """The configuration study `name` was stored with (None when the store has no such study)."""
    import optuna

    from nnsearch.search.optuna_setup import optuna_storage
    from nnsearch.search.quiet import quiet_optuna

    if name not in study_names(store):
        return None
    with quiet_optuna():
        attrs = optuna.load_study(study_name=name, storage=optuna_storage(store)).user_attrs
    if SPACE_ATTR not in attrs:
        raise NNSearchError(
            f"study '{name}' in {store.display_url} has no stored search space; create it again "
            "with nnsearch.create_study(name, space=...)"
        )
    space = parse_space(attrs[SPACE_ATTR], source=f"study '{name}' user attribute 'space'")
    return StudyConfig.from_dict(name, space, attrs.get(CONFIG_ATTR, {}))


def _space(space: SearchSpace | str) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else load_space(space)
