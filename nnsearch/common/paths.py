"""Where nnsearch finds and keeps things: search spaces, the default store, results, the cache.

In a source checkout (the package beside a `pyproject.toml`) the store and the
results live in the checkout's `db/` and `results/`; in a regular install the
store lives in the user's data folder and the results under the current
directory. Search spaces ship inside the package (`nnsearch/search_spaces`,
mapped from the checkout's `search_spaces/` at build time).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def checkout_root() -> Path | None:
    """The source checkout holding this package, or None for a regular install."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "search_spaces").is_dir() else None


def spaces_dir() -> Path:
    """The folder of the built-in search-space files."""
    root = checkout_root()
    return root / "search_spaces" if root else PACKAGE_DIR / "search_spaces"


def default_db_path() -> Path:
    """`db/nnsearch.db` in a source checkout, else `$XDG_DATA_HOME/nnsearch/nnsearch.db` (~/.local/share)."""
    root = checkout_root()
    if root:
        return root / "db" / "nnsearch.db"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "nnsearch" / "nnsearch.db"


def default_results_root() -> Path:
    """$NNSEARCH_RESULTS, else `results/` in a source checkout, else `results/` in the current directory."""
    if os.environ.get("NNSEARCH_RESULTS"):
        return Path(os.environ["NNSEARCH_RESULTS"])
    root = checkout_root()
    return root / "results" if root else Path.cwd() / "results"


def cache_dir(create: bool = True) -> Path:
    """$NNSEARCH_CACHE, else ~/.cache/nnsearch; created on first use (unless `create` is False)."""
    path = Path(os.environ.get("NNSEARCH_CACHE") or Path.home() / ".cache" / "nnsearch")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def size_limit_bytes(variable: str, default_gb: float) -> int:
    """A cache size limit in bytes from environment variable `variable` (gigabytes), else `default_gb`.

    A value that is not a number raises NNSearchError naming the variable.
    """
    from nnsearch.errors import NNSearchError

    text = os.environ.get(variable, "")
    try:
        gigabytes = float(text) if text else default_gb
    except ValueError:
        raise NNSearchError(f"{variable} must be a number of gigabytes, got {text!r}") from None
    return max(0, int(gigabytes * 2**30))
