"""Ctrl-C under the trial guard: raised at once, held back while recording, never lost."""

from __future__ import annotations

import os
import signal
import weakref

import pytest

from nnsearch.common.interrupts import InterruptGuard, raise_if_interrupted


class Thing:
    pass


def ctrl_c_inside_a_weakref_callback() -> None:
    """Deliver SIGINT while a weakref callback runs: the KeyboardInterrupt it raises is dropped by Python."""
    thing = Thing()

    def callback(_ref: weakref.ref) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(3):  # give the interpreter a bytecode boundary to run the handler on
            pass

    ref = weakref.ref(thing, callback)  # noqa: F841 - the callback needs the reference alive
    del thing


def test_a_ctrl_c_lost_in_a_callback_is_raised_at_the_next_check():
    steps = []
    with pytest.raises(KeyboardInterrupt), InterruptGuard():
        ctrl_c_inside_a_weakref_callback()
        steps.append("went on")  # Python carried on after dropping the interrupt
        raise_if_interrupted()
        steps.append("after the check")
    assert steps == ["went on"]


def test_the_report_of_a_lost_ctrl_c_is_dropped_and_other_reports_pass(capsys):
    import sys

    reported = []
    previous, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        with pytest.raises(KeyboardInterrupt), InterruptGuard():
            ctrl_c_inside_a_weakref_callback()
            sys.unraisablehook(type("Info", (), {"exc_value": ValueError("other")})())
        assert sys.unraisablehook == reported.append
    finally:
        sys.unraisablehook = previous
    assert [str(r.exc_value) for r in reported] == ["other"]


def test_a_lost_ctrl_c_is_raised_when_the_guard_exits_at_the_latest():
    with pytest.raises(KeyboardInterrupt), InterruptGuard():
        ctrl_c_inside_a_weakref_callback()


def test_ctrl_c_while_deferred_waits_for_the_guard_to_exit():
    steps = []
    with pytest.raises(KeyboardInterrupt), InterruptGuard() as guard:
        guard.defer()
        os.kill(os.getpid(), signal.SIGINT)
        raise_if_interrupted()  # deferred: no effect
        steps.append("recorded")
    assert steps == ["recorded"]


def test_no_ctrl_c_no_interrupt_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard():
        raise_if_interrupted()
    raise_if_interrupted()
    assert signal.getsignal(signal.SIGINT) is before
