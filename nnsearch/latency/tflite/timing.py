"""Timing .tflite files in the interpreter: repeated invokes on the thread-CPU or wall clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.errors import ExportError
from nnsearch.latency.tflite.interpreter import make_interpreter, runtime_version
from nnsearch.store.stat import LatencyStat

RUNTIME = "tflite-cpu"
"""ai-edge-litert Interpreter, default op resolver (XNNPACK delegate)."""

#: Clocks `time_tflite` reads: per-thread CPU time of the calling thread, or wall time.
CLOCKS = ("auto", "thread-cpu", "wall")


@dataclass(frozen=True)
class Timing(LatencyStat):
    """Latency of repeated `invoke()` calls of one model, in ms per call (a `LatencyStat`).

    `clock` says what was read: 'thread-cpu' (CPU time of the invoking thread,
    the default with one thread) or 'wall'. `ms` (the minimum) is the statistic
    `nnsearch.latency.table` compares (see its module docstring); `median_ms` and
    `max_ms` describe the spread.
    """

    threads: int
    runtime: str
    runtime_version: str
    height: int = 0
    width: int = 0
    samples_ms: tuple[float, ...] = field(default=(), compare=False, repr=False)
    clock: str = "wall"


def resolve_clock(clock: str, threads: int) -> str:
    """The clock `time_tflite` reads: 'auto' is 'thread-cpu' with one thread, else 'wall'.

    With one thread XNNPACK and the builtin kernels run inside the invoking
    thread, so its CPU time is the invoke's latency minus the time the thread
    sat descheduled while other processes ran; on an idle machine both clocks
    agree (within 1% on one-op models here). With more threads the work runs
    in pool threads, so only wall time means latency.
    """
    if clock not in CLOCKS:
        raise ExportError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    if clock == "auto":
        return "thread-cpu" if threads == 1 else "wall"
    if clock == "thread-cpu" and threads != 1:
        raise ExportError(f"clock='thread-cpu' measures one thread's latency only, got threads={threads}")
    return clock


def _timer(clock: str) -> Callable[[], int]:
    return time.thread_time_ns if clock == "thread-cpu" else time.perf_counter_ns


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Random values of a tensor's dtype: uniform [0, 1) floats, or integers over the type's range."""
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def time_tflite(
    path: str | Path,
    *,
    runs: int = 5,
    warmup: int = 1,
    threads: int = 1,
    clock: str = "auto",
    min_total_ms: float = 0.0,
    max_runs: int = 200,
    delegates: Sequence[Any] = (),
) -> Timing:
    """Time a .tflite file on random inputs of the shapes it declares.

    After `warmup` untimed calls, `runs` calls are timed; with `min_total_ms`
    the timing goes on until the timed calls add up to that many ms (at most
    `max_runs` calls), so short models get more runs. `delegates`: external
    delegates (`nnsearch.latency.tflite.load_delegate`) the interpreter uses.
    A model the runtime cannot run raises ExportError with the runtime's message.
    """
    if runs < 1 or warmup < 0 or min_total_ms < 0:
        raise ExportError(
            f"runs must be >= 1, warmup >= 0 and min_total_ms >= 0, got runs={runs}, "
            f"warmup={warmup}, min_total_ms={min_total_ms}"
        )
    clock = resolve_clock(clock, threads)
    interpreter = make_interpreter(path, threads, delegates)
    rng = np.random.default_rng(0)
    details = interpreter.get_input_details()
    for d in details:
        interpreter.set_tensor(d["index"], _random_input(rng, tuple(d["shape"]), np.dtype(d["dtype"])))
    now, samples = _timer(clock), list[float]()
    try:
        for _ in range(warmup):
            interpreter.invoke()
        while len(samples) < runs or (sum(samples) < min_total_ms and len(samples) < max(runs, max_runs)):
            start = now()
            interpreter.invoke()
            samples.append((now() - start) / 1e6)
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"the TFLite interpreter cannot run {path}: {exc}") from None
    shape = tuple(details[0]["shape"])
    return Timing(
        **LatencyStat.of_samples(samples).stat_values(),
        threads=threads,
        runtime=RUNTIME,
        runtime_version=runtime_version(),
        height=int(shape[1]) if len(shape) == 4 else 0,
        width=int(shape[2]) if len(shape) == 4 else 0,
        samples_ms=tuple(samples),
        clock=clock,
    )
