"""The SQL store: schema, opening, recording and querying (timings included: `timings`, `stat`)."""

from nnsearch.store.engine import Store, resolve_db_url

__all__ = ["Store", "resolve_db_url"]
