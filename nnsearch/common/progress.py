"""Progress display for long work: tqdm bars on a terminal, sparse lines otherwise."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar on stderr (quiet when `enabled` is false)."""
    interactive = sys.stderr.isatty()
    return iter(tqdm(
        items, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True,
        mininterval=0.5 if interactive else 15.0, file=sys.stderr,
    ))
