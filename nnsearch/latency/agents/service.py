"""The study's side of the agents: is a device served, fill its table with probe jobs, time candidates there."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from nnsearch.common.progress import progress_bar
from nnsearch.errors import LatencyError
from nnsearch.latency.agents.jobs import JobState, enqueue_model, enqueue_probes, probe_target, serving_agents, wait_for
from nnsearch.latency.probes import OpKey
from nnsearch.latency.service import HOST_DEVICE
from nnsearch.latency.stored_table import stored_keys
from nnsearch.store.engine import Store
from nnsearch.store.record import LatencyRecord
from nnsearch.store.schema import MeasureJob


def served_by_agents(store: Store, device: str) -> bool:
    """Whether measurement agents serve device profile `device` in this store (never the host's own 'host-cpu')."""
    return device != HOST_DEVICE and bool(serving_agents(store, device))


def fill_device_table(
    store: Store,
    device: str,
    keys: list[OpKey],
    threads: int,
    precision: str,
    *,
    study: str | None = None,
    timeout_s: float | None = None,
    verbose: bool = True,
    poll_s: float = 1.0,
) -> tuple[int, int]:
    """Queue probe jobs for the keys `device`'s table lacks and wait for the agents; (queued, total keys).

    LatencyError when a probe fails on the device (with the runtime's message) or
    the agents do not finish within `timeout_s`.
    """
    missing = sorted(set(keys) - stored_keys(store, device, threads, precision))
    if not missing:
        return 0, len(keys)
    store.write(lambda session: enqueue_probes(session, device, missing, threads, precision, study=study))
    targets = [probe_target(key, threads, precision) for key in missing]
    ids: list[int] = []
    for start in range(0, len(targets), 500):
        chunk = targets[start : start + 500]

        def read(conn: Connection, chunk: list[str] = chunk) -> list[int]:
            return list(
                conn.scalars(
                    select(MeasureJob.id).where(
                        MeasureJob.device == device, MeasureJob.round == 0, MeasureJob.target.in_(chunk)
                    )
                )
            )

        ids += store.reading(read)
    with progress_bar(total=len(ids), desc=f"probes on {device}", enabled=verbose) as bar:
        states = wait_for(
            store, ids, timeout_s=timeout_s, poll_s=poll_s, progress=lambda done, total: bar.update(done - bar.n)
        )
    failed = [s for s in states.values() if s.state == "failed"]
    if failed:
        raise LatencyError(
            f"{len(failed)} of {len(ids)} probe job(s) failed on device '{device}', e.g. job "
            f"{failed[0].id}: {failed[0].message}"
        )
    waiting = [s for s in states.values() if s.state not in ("done", "failed")]
    if waiting:
        raise LatencyError(
            f"{len(waiting)} of {len(ids)} probe job(s) for device '{device}' were not timed within "
            f"{timeout_s:g} s; are its agents running? (`nnsearch agent --status`)"
        )
    return len(missing), len(keys)


class AgentTiming:
    """Whole-model timings of a study's candidates on a device served by agents."""

    def __init__(
        self, store: Store, device: str, height: int, width: int, threads: int, precision: str, study: str | None = None
    ) -> None:
        self.store, self.device, self.study = store, device, study
        self.height, self.width, self.threads, self.precision = height, width, threads, precision

    def submit(self, nn: str, tflite: bytes, predicted_ms: float | None) -> int:
        """Queue the model's timing; the job id."""
        return enqueue_model(
            self.store,
            self.device,
            nn,
            tflite,
            self.height,
            self.width,
            self.threads,
            self.precision,
            study=self.study,
            predicted_ms=predicted_ms,
        )

    def wait(self, job: int, timeout_s: float | None, log: Callable[[str], None]) -> LatencyRecord | None:
        """The measured record once the agent timed the job; None if it failed or `timeout_s` passed."""
        began = time.monotonic()
        state: JobState = wait_for(self.store, [job], timeout_s=timeout_s, poll_s=0.5)[job]
        if state.state == "failed":
            log(f"the agent could not time {self.device} job {job}: {state.message}; using the table's prediction")
            return None
        if state.stat is None:
            log(
                f"no agent timed job {job} on '{self.device}' within {time.monotonic() - began:.0f} s; using the "
                "table's prediction until the measurement lands"
            )
            return None
        return LatencyRecord(
            device=self.device,
            runtime=state.runtime or "",
            runtime_version=state.runtime_version or "",
            threads=self.threads,
            height=self.height,
            width=self.width,
            kind="measured",
            precision=self.precision,
            **state.stat.stat_values(),
        )
