"""What a study does once before its first trial: fill the lookup table, check the latency budget."""

from __future__ import annotations

from collections.abc import Callable

from nnsearch.errors import NNSearchError
from nnsearch.latency.agents.service import fill_device_table, served_by_agents
from nnsearch.latency.candidate import CandidateLatency
from nnsearch.latency.probes import space_keys
from nnsearch.latency.service import HOST_DEVICE, clear_caches, fill_space_table
from nnsearch.search.config import StudyConfig
from nnsearch.search.samplers import PREDICTS_LATENCY
from nnsearch.store.engine import Store
from nnsearch.store.locks import advisory_lock


def fill_lookup_table(
    config: StudyConfig, store: Store, *, verbose: bool = True, log: Callable[[str], None] = print
) -> None:
    """For a sampler that predicts latencies, on this host: measure the space's missing lookup-table entries.

    For a device served by measurement agents: queue probe jobs for the entries
    its table lacks and wait for the agents (every prediction needs them).

    The sampler predicts the latency of dozens of candidates per trial; done
    here, the measuring shows progress once instead of slowing early trials.
    """
    lat = config.latency
    precision = config.latency.precision
    if lat.predict and served_by_agents(store, lat.device):
        queued, total = fill_device_table(
            store,
            lat.device,
            space_keys(config.space, lat.height, lat.width),
            lat.threads,
            precision,
            study=config.name,
            verbose=verbose,
        )
        if queued:
            clear_caches()  # cached profiles and tables re-read the new entries
            log(
                f"lookup table: the agents of '{lat.device}' measured {queued} of the space's {total} layer "
                f"latencies at {lat.height}x{lat.width}"
            )
        return
    if config.sampler.name not in PREDICTS_LATENCY or not lat.predict or lat.device != HOST_DEVICE:
        return
    with advisory_lock(store, f"lut-{lat.height}x{lat.width}-{lat.threads}-{precision}"):
        measured, total = fill_space_table(
            store, config.space, lat.height, lat.width, lat.threads, verbose=verbose, precision=precision
        )
    if measured:
        log(
            f"lookup table: measured {measured} of the space's {total} layer latencies at "
            f"{lat.height}x{lat.width} on {lat.device}"
        )


def check_budget_reachable(config: StudyConfig, latency: CandidateLatency) -> None:
    """Refuse, before any training, a latency budget below the space's fastest student."""
    budget = config.budget.max_latency_ms
    if budget is None or not config.latency.predict:
        return
    fastest = min(config.space.fastest_candidates(), key=latency.predicted_ms)
    best = latency.predicted_ms(fastest)
    if best > budget:
        lat = config.latency
        raise NNSearchError(
            f"--max-latency-ms {budget:g} is below anything space '{config.space.name}' can reach: its "
            f"fastest student ({fastest.describe()}) is predicted at {best:.1f} ms on '{lat.device}' at "
            f"{lat.height}x{lat.width}, {lat.threads} thread(s)"
        )
