"""Parallel workers on one machine: `nnsearch search --workers N`.

The parent prepares what all workers share (the budget check, the teacher and
its outputs, cached on disk), then starts N worker processes that claim trials
from the same study (`nnsearch.search.claims`) and shows the study's live status
while they run. Each worker writes its log to <results>/<study>/workers/. On a machine
with several GPUs each worker gets its own (CUDA_VISIBLE_DEVICES set per process,
round-robin when there are more workers than GPUs). Workers
on other machines join the same study by running `nnsearch search` with the
same PostgreSQL URL and study name.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nnsearch.common.device import assign_gpus, default_device, describe_device, visible_gpus
from nnsearch.errors import NNSearchError
from nnsearch.search.claims import TrialCounts
from nnsearch.search.live import LiveDisplay, StudyStatus
from nnsearch.search.study import HeartbeatConfig, Study, StudyConfig
from nnsearch.store.engine import Store
from nnsearch.train.datasets import load_data

POLL_S = 2.0


def run_workers(
    config: StudyConfig,
    store: Store,
    total: int,
    workers: int,
    *,
    heartbeat: HeartbeatConfig = HeartbeatConfig(),
    timeout_s: float | None = None,
    log_dir: Path | None = None,
    results_root: Path | None = None,
) -> TrialCounts:
    """Run the study with `workers` processes until it has `total` finished trials.

    Results go to `results_root/<study>` (default `default_results_root()`), worker
    logs to `log_dir` (default its `workers/` folder).
    """
    if workers < 1:
        raise NNSearchError(f"--workers must be >= 1, got {workers}")
    data = load_data(config.data.spec, max_side=config.data.max_side, seed=config.seed)  # bad paths fail here
    study = Study(config, store, heartbeat=heartbeat, data=data, results_root=results_root)
    finished = TrialCounts.of(study.optuna).finished
    print(f"study '{config.name}': {finished} of {total} trials finished", flush=True)
    if study.complete(total):
        print(f"study '{config.name}' already has its {total} trials; raise --trials to add more", flush=True)
        return TrialCounts.of(study.optuna)
    study.prepare()
    store.dispose()
    log_dir = log_dir or study.results_dir / "workers"
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = mp.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_main,
            name=f"nnsearch-worker-{k}",
            args=(
                config,
                store.url,
                total,
                heartbeat,
                timeout_s,
                log_dir / f"worker-{k}.log",
                threads,
                study.results_dir.parent,
            ),
        )
        for k in range(workers)
    ]
    gpus = assign_gpus(workers, visible_gpus())
    for process, gpu in zip(processes, gpus):
        with _gpu_environment(gpu):  # a spawned child reads its environment when it starts
            process.start()
    on_gpus = f", GPUs {', '.join(g or '-' for g in gpus)}" if any(gpus) else ""
    print(f"started {workers} workers ({threads} torch thread(s) each{on_gpus}), logs in {log_dir}", flush=True)
    display = LiveDisplay(total)
    try:
        _monitor(study, store, total, processes, display)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    finally:
        display.close()
    _report_exits(processes)
    return TrialCounts.of(study.optuna)


@contextlib.contextmanager
def _gpu_environment(gpu: str | None) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES=`gpu` while a worker starts (unchanged when `gpu` is None)."""
    if gpu is None:
        yield
        return
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def _monitor(study: Study, store: Store, total: int, processes: list, display: LiveDisplay) -> None:
    reader = study.reader()
    while any(p.is_alive() for p in processes):
        display.update(StudyStatus.read(study.optuna, store, total, reader=reader))
        time.sleep(POLL_S)
    display.update(StudyStatus.read(study.optuna, store, total, reader=reader))


def _stop(processes: list) -> None:
    """Ctrl-C: let every worker mark its running trial failed and exit, then wait for them.

    A Ctrl-C at the terminal reaches the workers too; the parent forwards it only
    to workers still running a few seconds later (e.g. when only it was signalled).
    """
    deadline = time.monotonic() + 5
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in processes:
        if process.is_alive() and process.pid:
            os.kill(process.pid, signal.SIGINT)
    for process in processes:
        process.join(timeout=60)
        if process.is_alive():
            process.terminate()


def _report_exits(processes: list) -> None:
    for process in processes:
        code = process.exitcode
        if code and code < 0:
            print(
                f"{process.name} was killed by signal {-code}; its trial was retried by the other workers",
                file=sys.stderr,
            )
        elif code:
            print(f"{process.name} exited with code {code} (see its log)", file=sys.stderr)


def _worker_main(
    config: StudyConfig,
    url: str,
    total: int,
    heartbeat: HeartbeatConfig,
    timeout_s: float | None,
    log_path: Path,
    threads: int,
    results_root: Path,
) -> None:
    """Body of one worker process (started with the spawn method)."""
    import torch

    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - the worker's stdout and stderr until it exits
    for stream in (1, 2):  # native libraries (TFLite, OpenMP) write to the file descriptors directly
        os.dup2(log.fileno(), stream)
    sys.stdout = sys.stderr = log
    torch.set_num_threads(threads)
    print(f"worker pid {os.getpid()}: device {describe_device(default_device())}", flush=True)
    try:
        study = Study(config, Store(url), heartbeat=heartbeat, results_root=results_root)
        study.run(total, timeout_s=timeout_s)
    except KeyboardInterrupt:
        print("worker interrupted; finished trials are saved", flush=True)
        sys.exit(130)
    except NNSearchError as exc:
        print(f"nnsearch: error: {exc}", flush=True)
        sys.exit(2)
