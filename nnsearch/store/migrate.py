"""Schema migrations: each step upgrades a store by one schema version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from nnsearch.errors import StoreError
from nnsearch.store.schema import SCHEMA_VERSION, SchemaInfo

if TYPE_CHECKING:
    from nnsearch.store.engine import Store

#: version -> function that upgrades a store from that version to version + 1.
MIGRATIONS: dict[int, Callable[["Store"], None]] = {}


def migrate(store: "Store", found: int) -> None:
    """Apply every migration from `found` up to the current schema version."""
    for version in range(found, SCHEMA_VERSION):
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema {version} to {version + 1} for {store.display_url}")
        step(store)
        with store.session() as session:
            session.merge(SchemaInfo(key="schema_version", value=str(version + 1)))
