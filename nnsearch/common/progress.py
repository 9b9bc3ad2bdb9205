"""Progress display for long work: tqdm bars on a terminal, sparse lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _options(desc: str, enabled: bool) -> dict:
    interactive = sys.stderr.isatty()
    return dict(
        desc=desc,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5 if interactive else 15.0,
        file=sys.stderr,
    )


def progress_bar(*, total: int, desc: str = "", enabled: bool = True) -> tqdm:
    """A progress bar on stderr advanced with `.update(n)`; use it as a context manager."""
    return tqdm(total=total, **_options(desc, enabled))


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar on stderr (quiet when `enabled` is false)."""
    return iter(tqdm(items, total=total, **_options(desc, enabled)))
