"""What a study does once before its first trial: fill the lookup table, check the latency budget."""

from __future__ import annotations

from typing import Callable

from nnsearch.errors import NNSearchError
from nnsearch.search.candidate_latency import CandidateLatency
from nnsearch.store.locks import advisory_lock
from nnsearch.search.config import StudyConfig
from nnsearch.search.latency import HOST_DEVICE, fill_space_table
from nnsearch.search.samplers import PREDICTS_LATENCY
from nnsearch.store.engine import Store


def fill_lookup_table(config: StudyConfig, store: Store, *, verbose: bool = True,
                      log: Callable[[str], None] = print) -> None:
    """For a sampler that predicts latencies, on this host: measure the space's missing lookup-table entries.

    The sampler predicts the latency of dozens of candidates per trial; done
    here, the measuring shows progress once instead of slowing early trials.
    """
    lat = config.latency
    if config.sampler not in PREDICTS_LATENCY or not lat.predict or lat.device != HOST_DEVICE:
        return
    precision = config.precision
    with advisory_lock(store, f"lut-{lat.height}x{lat.width}-{lat.threads}-{precision}"):
        measured, total = fill_space_table(store, config.space, lat.height, lat.width, lat.threads, verbose=verbose,
                                           precision=precision)
    if measured:
        log(f"lookup table: measured {measured} of the space's {total} layer latencies at "
            f"{lat.height}x{lat.width} on {lat.device}")


def check_budget_reachable(config: StudyConfig, latency: CandidateLatency) -> None:
    """Refuse, before any training, a latency budget below the space's fastest student."""
    budget = config.max_latency_ms
    if budget is None or not config.latency.predict:
        return
    fastest = min(config.space.fastest_candidates(), key=latency.predicted_ms)
    best = latency.predicted_ms(fastest)
    if best > budget:
        lat = config.latency
        raise NNSearchError(
            f"--max-latency-ms {budget:g} is below anything space '{config.space.name}' can reach: its "
            f"fastest student ({fastest.describe()}) is predicted at {best:.1f} ms on '{lat.device}' at "
            f"{lat.height}x{lat.width}, {lat.threads} thread(s)")
