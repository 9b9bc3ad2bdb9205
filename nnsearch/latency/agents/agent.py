"""The agent loop: claim a job of the device profile, time it with the runner under a renewed lease, land it.

One job at a time. While the runner times, a heartbeat thread renews the
job's lease every `lease_s / 4` seconds, so a live agent keeps its job however
long the timing takes, and a killed one (SIGKILL, power cut) loses it after at
most `lease_s`: then another agent, or this one restarted, claims it again.
A result whose lease was lost meanwhile is dropped, not written (the job is
someone else's now), so no job is ever recorded twice. A model the device
cannot run ends `failed` with the runtime's message. Ctrl-C or SIGTERM hands
the held job back to the queue at once. A store that cannot be reached for a
while is waited for (its job, if any, goes back to the queue after the lease).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import update

from nnsearch.common.paths import safe_component
from nnsearch.errors import NNSearchError, StoreError
from nnsearch.latency.agents.interface import Runner, RunnerError
from nnsearch.latency.agents.jobs import Claim, claim, complete, fail, release, renew, store_clock
from nnsearch.latency.agents.landing import land
from nnsearch.latency.probes import write_probe
from nnsearch.store.dialect import upsert
from nnsearch.store.engine import Store
from nnsearch.store.schema import MeasureAgent, utcnow


@dataclass
class AgentStats:
    """What an agent did: jobs done, failed, and results dropped because their lease was lost."""

    done: int = 0
    failed: int = 0
    lost: int = 0

    @property
    def jobs(self) -> int:
        return self.done + self.failed + self.lost


class LeaseKeeper:
    """Renews a held job's lease every `interval_s` in a background thread; `lost` once renewal fails."""

    def __init__(
        self, store: Store, job: Claim, lease_s: float, interval_s: float, on_beat: Callable[[], None] = lambda: None
    ) -> None:
        self.store, self.job, self.lease_s, self.interval_s, self.on_beat = store, job, lease_s, interval_s, on_beat
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job.id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not renew(self.store, self.job, self.lease_s):
                    self.lost = True
                    return
                self.on_beat()
            except NNSearchError:  # the store is briefly unreachable: try again at the next beat
                continue


class Agent:
    """Serves device profile `device` from `store` with `runner` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        device: str,
        runner: Runner,
        *,
        name: str | None = None,
        lease_s: float = 60.0,
        poll_s: float = 2.0,
        runs: int = 5,
        warmup: int = 1,
        repeat_probes: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        if lease_s < 2 or poll_s <= 0 or runs < 1 or warmup < 0:
            raise NNSearchError(
                f"agent needs lease >= 2 s, poll > 0 s, runs >= 1 and warmup >= 0, got "
                f"lease={lease_s} poll={poll_s} runs={runs} warmup={warmup}"
            )
        self.store, self.device, self.runner = store, device, runner
        self.name = name or f"{device}@{socket.gethostname()}:{os.getpid()}"
        self.lease_s, self.poll_s, self.runs, self.warmup = float(lease_s), float(poll_s), runs, warmup
        self.identity = runner.identity()
        self.land = partial(land, repeat_probes=repeat_probes)
        self.log = log
        self.stats = AgentStats()

    def register(self, state: str = "running") -> None:
        """Write (or refresh) this agent's `measure_agent` row."""

        def work(session) -> None:
            upsert(
                session,
                MeasureAgent,
                [
                    dict(
                        name=self.name,
                        device=self.device,
                        runner=self.runner.name,
                        runtime=self.identity.runtime,
                        runtime_version=self.identity.runtime_version,
                        delegate=self.identity.delegate,
                        host=socket.gethostname(),
                        state=state,
                        started_at=utcnow(),
                        seen_at=store_clock(session.connection()),
                    )
                ],
            )

        self.store.write(work)

    def seen(self, state: str = "running") -> None:
        """Refresh this agent's last-seen time (and state)."""
        self.store.write(
            lambda session: session.execute(
                update(MeasureAgent)
                .where(MeasureAgent.name == self.name)
                .values(seen_at=store_clock(session.connection()), state=state)
            )
        )

    def run(self, max_jobs: int | None = None, idle_exit_s: float | None = None) -> AgentStats:
        """Serve jobs until `max_jobs` are handled or the queue stayed empty `idle_exit_s` (default: forever)."""
        self.register()
        self.log(
            f"agent {self.name}: serving device '{self.device}' with the {self.runner.name} runner "
            f"({self.identity.runtime}, {self.identity.runtime_version}) from {self.store.display_url}"
        )
        idle_since = time.monotonic()
        try:
            while max_jobs is None or self.stats.jobs < max_jobs:
                try:
                    if self.run_one():
                        idle_since = time.monotonic()
                        continue
                    self.seen()
                except StoreError as exc:  # the store is unreachable for a while: a long-running agent waits
                    self.log(f"agent {self.name}: {exc}; trying again in {self.poll_s:g} s")
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                time.sleep(self.poll_s)
        finally:
            self.seen("stopped")
        return self.stats

    def run_one(self) -> bool:
        """Claim and handle one job; False when the queue has none for this device."""
        job = claim(self.store, self.device, self.name, self.lease_s)
        if job is None:
            return False
        recovered = " (claimed again after its lease ran out)" if job.attempts > 1 else ""
        try:
            with (
                LeaseKeeper(self.store, job, self.lease_s, max(self.lease_s / 4, 0.5), self.seen) as keeper,
                tempfile.TemporaryDirectory(prefix="nnsearch-agent-") as folder,
            ):
                try:
                    stat = self.runner.time(self._file(job, Path(folder)), job.threads, self.runs, self.warmup)
                except (RunnerError, NNSearchError) as exc:
                    if keeper.lost or not fail(self.store, job, str(exc), self.identity):
                        return self._lost(job)
                    self.stats.failed += 1
                    self.log(f"agent {self.name}: job {job.id} {job.target} failed{recovered}: {exc}")
                    return True
            if keeper.lost or not complete(self.store, job, stat, self.identity, self.land):
                return self._lost(job)
        except (KeyboardInterrupt, SystemExit):
            release(self.store, job)
            raise
        self.stats.done += 1
        self.log(
            f"agent {self.name}: job {job.id} {job.target}: {stat.ms:.3f} ms (median {stat.median_ms:.3f}, "
            f"{stat.runs} runs){recovered}"
        )
        return True

    def _lost(self, job: Claim) -> bool:
        self.stats.lost += 1
        self.log(f"agent {self.name}: job {job.id} {job.target}: lease lost (another agent took it); result dropped")
        return True

    @staticmethod
    def _file(job: Claim, folder: Path) -> Path:
        """The .tflite file a job times: the probe written here, or the model's stored bytes."""
        if job.kind == "probe":
            assert job.key is not None
            return write_probe(job.key, folder, job.precision)
        if not job.payload:
            raise RunnerError(f"job {job.id} holds no model file")
        try:  # the name comes from the shared store: it must not lead out of the folder
            stem = safe_component(job.nn or "model", f"job {job.id}: model name")
        except NNSearchError as exc:
            raise RunnerError(str(exc)) from None
        path = folder / f"{stem}.tflite"
        path.write_bytes(job.payload)
        return path
