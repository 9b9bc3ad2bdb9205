"""Runners: how an agent times a .tflite file. The built-in `local` and `adb` ones, and plugins.

`local` is `LocalRunner` here, `adb` is `nnsearch.latency.agents.adb.AdbRunner`;
`make_runner` builds either, or a plugin named 'package.module:factory' (the
interface a plugin implements: `nnsearch.latency.agents.interface`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nnsearch.errors import ExportError, NNSearchError
from nnsearch.latency.agents.adb import AdbRunner
from nnsearch.latency.agents.interface import Runner, RunnerError, RunnerIdentity
from nnsearch.latency.tflite import RUNTIME, load_delegate, runtime_version, time_tflite
from nnsearch.store.stat import LatencyStat

#: A short model is timed until its runs add up to this many ms (as lookup-table probes are).
MIN_TOTAL_MS = 40.0


class LocalRunner:
    """ai-edge-litert's interpreter on this machine, optionally with an external delegate library.

    Without a delegate the runtime is `tflite-cpu` (XNNPACK), the same as the
    host's lookup tables; with one it is `tflite-delegate:<library file name>`.
    """

    name = "local"

    def __init__(self, delegate: str | None = None, options: Mapping[str, str] | None = None) -> None:
        self.delegate = delegate
        self.options = dict(options or {})
        if delegate is not None:
            load_delegate(delegate, self.options)  # a library that does not load stops the agent at start

    def identity(self) -> RunnerIdentity:
        runtime = RUNTIME if self.delegate is None else f"tflite-delegate:{Path(self.delegate).name}"
        return RunnerIdentity(runtime, runtime_version(), self.delegate, tuple(sorted(self.options.items())))

    def time(self, path: Path, threads: int, runs: int, warmup: int) -> LatencyStat:
        delegates = [] if self.delegate is None else [load_delegate(self.delegate, self.options)]
        try:
            timing = time_tflite(
                path, runs=runs, warmup=warmup, threads=threads, min_total_ms=MIN_TOTAL_MS, delegates=delegates
            )
        except ExportError as exc:
            raise RunnerError(str(exc)) from None
        return timing.stat


def parse_options(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """['k=v', ...] -> {k: v}, with a clear error naming `flag` otherwise."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise NNSearchError(f"{flag} takes KEY=VALUE, got {pair!r}")
        options[key.strip()] = value
    return options


#: Built-in runners by name: factory of the runner options.
BUILTIN: dict[str, Callable[[Mapping[str, str]], Runner]] = {
    "local": lambda options: LocalRunner(**options),  # type: ignore[arg-type]  # options are keyword strings
    "adb": lambda options: AdbRunner(**options),
}


def make_runner(name: str, options: Mapping[str, str] | None = None) -> Runner:
    """The runner `name` ('local', 'adb' or 'module:factory') built with `options`."""
    options = dict(options or {})
    if name in BUILTIN:
        factory = BUILTIN[name]
    elif ":" in name:
        factory = _plugin(name)
    else:
        raise NNSearchError(
            f"unknown runner {name!r}: use one of {sorted(BUILTIN)} or a plugin as 'package.module:factory'"
        )
    try:
        runner = factory(options)
    except TypeError as exc:
        raise NNSearchError(f"runner {name!r} does not take the options {sorted(options)}: {exc}") from None
    if not isinstance(runner, Runner):
        raise NNSearchError(
            f"runner {name!r} returned {type(runner).__name__}, which lacks name, identity() "
            "or time() (see nnsearch.latency.agents.runners)"
        )
    return runner


def _plugin(spec: str) -> Callable[[Mapping[str, str]], Any]:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NNSearchError(f"cannot import runner plugin module {module_name!r}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise NNSearchError(f"runner plugin {spec!r}: {module_name} has no callable {attribute!r}")
    return factory
