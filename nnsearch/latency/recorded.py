"""Latency predictions for a replay: the lookup table a study's device profile had, loaded into memory.

A search tells its sampler every candidate's predicted latency before training
(`nnsearch.search.samplers.SamplerContext`); a replay gives its samplers the same
knowledge from the recorded store: the resolution and thread count the study's
latencies were recorded at, and the stored lookup-table entries of that
device. The replay never measures: a student that needs an entry the store
lacks has no prediction (the guided sampler then leaves it out), so a replay
is a pure lookup and repeatable. `nnsearch lut build` fills a table completely.
"""

from __future__ import annotations

from sqlalchemy import select

from nnsearch.errors import LatencyError
from nnsearch.latency.probes import space_keys
from nnsearch.latency.service import LatencyFn, resolve_profile
from nnsearch.latency.stored_table import SqlLutBackend
from nnsearch.latency.table import LatencyTable, MemoryBackend
from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace
from nnsearch.store.engine import Store
from nnsearch.store.schema import LatencyRun, TrialLink
from nnsearch.store.timings import study_configuration


def recorded_resolution(store: Store, study: str, device: str) -> tuple[int, int, int] | None:
    """(height, width, threads) of the study's latency configuration on `device` (`study_configuration`), or None."""
    found = study_configuration(store, study, device)
    if found.height is not None and found.width is not None and found.threads is not None:
        return found.height, found.width, found.threads
    # no stored configuration (records written without a study): the students' largest recorded input,
    # then the fewest threads there, as `nnsearch.store.timings` picks for readers without one
    query = (
        select(LatencyRun.height, LatencyRun.width, LatencyRun.threads)
        .join(TrialLink, TrialLink.nn == LatencyRun.nn)
        .where(TrialLink.study == study, LatencyRun.device == device)
        .order_by((LatencyRun.height * LatencyRun.width).desc(), LatencyRun.threads)
        .limit(1)
    )
    row = store.reading(lambda conn: conn.execute(query).first())
    return None if row is None else (int(row.height), int(row.width), int(row.threads))


def stored_predictor(store: Store, study: str, space: SearchSpace, device: str) -> LatencyFn | None:
    """Predicted ms of any student of `space` from the stored table (None where an entry is missing).

    None when the study has no latency records on `device` or the store no
    table for that device.
    """
    found = recorded_resolution(store, study, device)
    if found is None:
        return None
    height, width, threads = found
    try:
        profile = resolve_profile(store, device, threads)
        keys = space_keys(space, height, width)
    except LatencyError:
        return None
    entries = SqlLutBackend(store).get(profile, keys)
    if not entries:
        return None
    table = LatencyTable(profile, MemoryBackend(entries.values()))

    def predict(arch: Arch) -> float | None:
        try:
            return table.predict(arch, height, width)
        except LatencyError:
            return None

    return predict
