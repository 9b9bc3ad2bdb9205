"""Where nnsearch finds and keeps things: search spaces, the default store, results, the cache.

In a source checkout (the package beside a `pyproject.toml`) the store and the
results live in the checkout's `db/` and `results/`; in a regular install the
store lives in the user's data folder and the results under the current
directory. Search spaces ship inside the package (`nnsearch/search_spaces`,
mapped from the checkout's `search_spaces/` at build time). Names that become
part of a path are checked by `safe_component` (one rule for all of them).
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


#: Longest name (UTF-8 bytes) that may become one file or folder name; file systems allow 255, suffixes need room.
MAX_NAME_BYTES = 200
_NAME_RULE = (
    "names that become file or folder names must be 1 to 200 bytes long, not '.' or '..', and hold no "
    "'/', '\\' or control characters"
)


def safe_component(name: str, what: str) -> str:
    """`name` when it can be one file or folder name inside the folder nnsearch writes to; NNSearchError otherwise.

    Every study, model, runtime, device, precision, dataset and transform name that
    becomes part of a path passes here, so no name can point outside that folder
    ('../x', '/abs/x'). `what` says whose name it is (and where it came from) in the error.
    """
    from nnsearch.errors import NNSearchError

    text = name if isinstance(name, str) else ""
    bad = (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or len(text.encode()) > MAX_NAME_BYTES
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
    )
    if bad:
        raise NNSearchError(f"{what} {name!r} cannot be used as a file or folder name: {_NAME_RULE}")
    return text


def contained_path(root: Path, relative: str, what: str) -> Path:
    """`root / relative` when it stays inside `root` after following links; NNSearchError naming `what` otherwise."""
    from nnsearch.errors import NNSearchError

    for part in relative.split("/"):
        safe_component(part, f"{what}: path {relative!r} has a part")
    path = root / relative
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise NNSearchError(f"{what}: {path} leads outside {root} (through a link); nothing is written there")
    return path
