"""Ctrl-C that never splits a trial's record from Optuna's view of it."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

_active_guard: InterruptGuard | None = None


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C arrived under the active guard and was lost.

    Python ignores an exception raised by a signal handler that happens to run
    inside a garbage-collection or weakref callback (it prints "Exception ignored
    in ..." and carries on), so a Ctrl-C could silently let the trial run to the
    end. Long loops (each distillation step) call this to act on it anyway.
    """
    guard = _active_guard
    if guard is not None and guard.pending and not guard._deferring:
        raise KeyboardInterrupt


def defer_interrupts() -> None:
    """A trial's rows are about to be written: from here on Ctrl-C waits until the active guard exits.

    A Ctrl-C that arrived before (and was lost on the way) still stops the trial
    unrecorded. Without an active guard it does nothing else.
    """
    raise_if_interrupted()
    if _active_guard is not None:
        _active_guard.defer()


class InterruptGuard:
    """While active, Ctrl-C raises KeyboardInterrupt as usual until `defer()` is called;
    from then on it is held back and raised when the guard exits (after the trial's
    rows are written and Optuna has been told). Outside the main thread it does nothing.
    Every Ctrl-C is also remembered, so one that was swallowed is raised at the next
    `raise_if_interrupted()` or, at the latest, when the guard exits; Python's
    "Exception ignored in ..." report of the swallowed KeyboardInterrupt is not printed."""

    def __init__(self) -> None:
        self.pending = False
        self._deferring = False
        self._previous: Any = None
        self._outer: InterruptGuard | None = None
        self._previous_hook: Any = None
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> InterruptGuard:
        global _active_guard
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._outer, _active_guard = _active_guard, self
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def _unraisable(self, info: Any) -> None:
        """Drop the report of a KeyboardInterrupt Python had to swallow (it is pending); pass on the rest."""
        if isinstance(info.exc_value, KeyboardInterrupt) and self.pending:
            return
        self._previous_hook(info)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True
        if not self._deferring:
            raise KeyboardInterrupt

    def defer(self) -> None:
        """Hold back Ctrl-C from now until the guard exits (or `allow()`)."""
        self._deferring = True

    def allow(self) -> None:
        """Stop holding back Ctrl-C; one that arrived while it was held back is raised now."""
        self._deferring = False
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        global _active_guard
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            _active_guard = self._outer
            sys.unraisablehook = self._previous_hook
        if self.pending and kind is None:
            raise KeyboardInterrupt
