"""Ctrl-C that never splits a trial's record from Optuna's view of it."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any


class InterruptGuard:
    """While active, Ctrl-C raises KeyboardInterrupt as usual until `defer()` is called;
    from then on it is held back and raised when the guard exits (after the trial's
    rows are written and Optuna has been told). Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._deferring = False
        self._previous: Any = None
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> "InterruptGuard":
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._deferring:
            self.pending = True
            return
        raise KeyboardInterrupt

    def defer(self) -> None:
        """Hold back Ctrl-C from now until the guard exits."""
        self._deferring = True

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
        if self.pending and kind is None:
            raise KeyboardInterrupt
