"""What a finished job writes besides its own row, in the same transaction.

- A **probe** becomes the lookup-table entry of the agent's device profile
  (device name, the runner's runtime and version, the job's threads and
  precision), pooled with any entry stored before (`nnsearch.latency.freshness`).
  A first timing queues a repeat for later (an interleaved repeat timing); a
  repeat that finds the stored entry inflated queues one more, up to `MAX_ROUND`.
- A **whole model** becomes a `measured` `latency_run` row of its model (when
  the model is in the store), which the one-latency rule then prefers over the
  prediction. When the table predicted it clearly slower than measured, its
  entries are queued for re-measurement.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from nnsearch.latency.agents.jobs import RunnerIdentity, enqueue_probes
from nnsearch.latency.freshness import refreshed, repeat_disagrees, suspect_inflated
from nnsearch.latency.probes import OpKey, arch_keys
from nnsearch.latency.stored_table import stored_entry, upsert_entries
from nnsearch.latency.table import DeviceProfile, LutEntry
from nnsearch.model.arch import Arch
from nnsearch.store.dialect import insert_ignore
from nnsearch.store.schema import NN, LatencyRun, MeasureJob, utcnow
from nnsearch.store.stat import LatencyStat

#: The last round a probe is re-measured in (0: first timing, 1: its interleaved repeat).
MAX_ROUND = 3


def land(
    session: Session, job: MeasureJob, stat: LatencyStat, identity: RunnerIdentity, repeat_probes: bool = True
) -> str | None:
    """Write a finished job's result where it belongs; returns a note for the job's `message`."""
    if job.kind == "probe":
        return _land_probe(session, job, stat, identity, repeat_probes)
    return _land_model(session, job, stat, identity)


def profile_of(job: MeasureJob, identity: RunnerIdentity) -> DeviceProfile:
    """The lookup-table profile a job's timings belong to."""
    return DeviceProfile(job.device, identity.runtime, identity.runtime_version, job.threads, job.precision)


def _land_probe(
    session: Session, job: MeasureJob, stat: LatencyStat, identity: RunnerIdentity, repeat_probes: bool
) -> str | None:
    profile = profile_of(job, identity)
    key = OpKey(*json.loads(str(job.op_key)))  # a probe job always has its op key
    stored = stored_entry(session, profile, key)
    upsert_entries(session, profile, [LutEntry(profile, key, "measured", **refreshed(stored, stat).stat_values())])
    inflated = stored is not None and repeat_disagrees(stored, stat)
    if repeat_probes and job.round < MAX_ROUND and (job.round == 0 or inflated):
        enqueue_probes(session, job.device, [key], job.threads, job.precision, recheck=True)
    if inflated and stored is not None:
        return f"stored entry {stored.ms:.4g} ms was inflated: repeat {stat.ms:.4g} ms"
    return None


def _land_model(session: Session, job: MeasureJob, stat: LatencyStat, identity: RunnerIdentity) -> str:
    found = session.execute(select(NN.name, NN.arch).where(NN.name == job.nn)).first()
    note = f"measured {stat.ms:.4g} ms"
    if found is not None:
        insert_ignore(
            session,
            LatencyRun,
            [
                dict(
                    nn=job.nn,
                    device=job.device,
                    precision=job.precision,
                    runtime=identity.runtime,
                    runtime_version=identity.runtime_version,
                    threads=job.threads,
                    height=job.height,
                    width=job.width,
                    kind="measured",
                    created_at=utcnow(),
                    **stat.stat_values(),
                )
            ],
        )
    else:
        note += f" (model {job.nn} is not in the store, so no latency_run row)"
    if job.predicted_ms is not None:
        note += f", table {job.predicted_ms:.4g} ms"
        if found is not None and found.arch and suspect_inflated(job.predicted_ms, stat.ms):
            keys = [k for k, _ in arch_keys(Arch.from_dict(json.loads(found.arch)), job.height, job.width)]
            queued = enqueue_probes(session, job.device, keys, job.threads, job.precision, recheck=True)
            note += f"; the table over-predicts it, so {queued} of its {len(keys)} entries are re-measured"
    return note
