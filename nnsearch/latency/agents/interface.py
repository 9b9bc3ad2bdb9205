"""Runners: how an agent times a .tflite file on its device. `local`, `adb`, or a plugin.

The plugin interface is the `Runner` protocol: an object with

- `name` (str): the runner's name, shown by `nnsearch agent --status`;
- `identity()` -> `RunnerIdentity`: runtime name and version, delegate and
  options, recorded with every result (and naming the lookup-table profile);
- `time(path, threads, runs, warmup)` -> `LatencyStat` (milliseconds per
  call: median, min, max over `runs` timed calls after `warmup` untimed ones);
  on a model the device rejects it raises `RunnerError` with the runtime's
  message, which the job records as `failed`.

`nnsearch agent --runner package.module:factory --runner-option k=v ...`
imports `factory` and calls it with the options as a dict of strings; it must
return a `Runner`. That is the place for e.g. a cloud device-profiling service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from nnsearch.errors import NNSearchError
from nnsearch.latency.agents.jobs import RunnerIdentity
from nnsearch.store.stat import LatencyStat

__all__ = ["Runner", "RunnerError", "RunnerIdentity"]


class RunnerError(NNSearchError):
    """The device could not run a model; the message is the runtime's."""


@runtime_checkable
class Runner(Protocol):
    """Times .tflite files on one device (see the module docstring)."""

    name: str

    def identity(self) -> RunnerIdentity:
        """Runtime, version, delegate and options, recorded with every result."""

    def time(self, path: Path, threads: int, runs: int, warmup: int) -> LatencyStat:
        """The model's latency in ms per call; RunnerError with the runtime's message when it cannot run."""
