"""The latency stage's service: LUT predictions per device name, filling a table, prediction and profiling records.

`predict_latency` is what a search calls before training a candidate. The
device name picks a device profile: 'host-cpu' is this machine's interpreter
(`nnsearch.latency.table.host_profile`), whose missing entries can be measured
on the fly; any other name must have entries imported with `nnsearch lut import`.

Two process-wide caches, private to this module, keep predictions cheap: the
`LatencyTable` of each (store URL, profile) (`_TABLES`, so after the first call
for an arch a prediction is a dictionary walk) and the stored profile a device
name means (`_PROFILES`). `fill_space_table` clears them after adding entries;
`clear_caches` does so for edits made outside this process.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from nnsearch.common.precision import Precision
from nnsearch.errors import LatencyError, StoreError
from nnsearch.latency.machine_table import MachineCachedBackend, machine_lut
from nnsearch.latency.probes import check_resolution, space_keys
from nnsearch.latency.stored_table import SqlLutBackend, device_profiles
from nnsearch.latency.table import DeviceProfile, LatencyTable, can_measure, host_profile
from nnsearch.latency.tflite import Timing, export_tflite, time_tflite
from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace
from nnsearch.model.student import build_student
from nnsearch.store.engine import Store
from nnsearch.store.record import Bundle, LatencyRecord
from nnsearch.store.recording import record_bundle
from nnsearch.store.schema import NN, utcnow
from nnsearch.store.stored_model import stored_arch

HOST_DEVICE = "host-cpu"

#: A function predicting a student's latency in ms before it is trained (None: no prediction).
LatencyFn = Callable[[Arch], "float | None"]

_TABLES: dict[tuple[str, DeviceProfile], LatencyTable] = {}
_PROFILES: dict[tuple[str, str, int, str], DeviceProfile] = {}


def resolve_profile(store: Store, device_name: str, threads: int = 1, precision: str = Precision.FP32) -> DeviceProfile:
    """The device profile a name means: this host for 'host-cpu', else the one stored for that name.

    Each precision has its own table (`DeviceProfile.precision`).
    """
    if device_name == HOST_DEVICE:
        return host_profile(threads, HOST_DEVICE, precision)
    cache_key = (store.url, device_name, int(threads), precision)
    if cache_key in _PROFILES:
        return _PROFILES[cache_key]
    found = device_profiles(store, device_name, int(threads), precision)
    if not found:
        known = ", ".join(f"{p.name}/{p.threads}t/{p.precision}" for p in device_profiles(store)) or "none"
        raise LatencyError(
            f"no latency table for device '{device_name}' with {threads} thread(s) at {precision} in "
            f"{store.display_url} (stored: {known}); import one with `nnsearch lut import FILE.csv --device "
            f"{device_name} --threads {threads} --precision {precision}`, or use '{HOST_DEVICE}'"
        )
    if len(found) > 1:
        raise LatencyError(
            f"device '{device_name}' with {threads} thread(s) has several stored profiles "
            f"({'; '.join(map(str, found))}); keep one runtime version per device name"
        )
    _PROFILES[cache_key] = found[0]
    return found[0]


def lut_backend(store: Store) -> MachineCachedBackend:
    """The store's `latency_lut`, with this machine's table (`nnsearch.latency.machine_table`) behind it."""
    return MachineCachedBackend(SqlLutBackend(store), machine_lut())


def latency_table(store: Store, profile: DeviceProfile) -> LatencyTable:
    """The cached `LatencyTable` of a profile over the store's `latency_lut` (and this machine's table)."""
    key = (store.url, profile)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = LatencyTable(profile, lut_backend(store))
    table.backend = lut_backend(store)  # the caller's store object (it may have been disposed and reopened)
    return table


def clear_caches() -> None:
    """Forget cached tables and profiles (after editing the store outside this process)."""
    _TABLES.clear()
    _PROFILES.clear()


def predict_latency(
    store: Store,
    arch: Arch,
    device_name: str,
    height: int,
    width: int,
    threads: int = 1,
    measure_missing: bool = True,
    precision: str = Precision.FP32,
) -> float:
    """Predicted latency in ms of `arch` at height x width on a device profile, from the stored LUT.

    For 'host-cpu' with `measure_missing`, missing entries are measured here and
    stored; otherwise a missing entry is a `LatencyError` that says how to fill it.
    """
    profile = resolve_profile(store, device_name, threads, precision)
    table = latency_table(store, profile)
    measure = measure_missing and device_name == HOST_DEVICE and can_measure(profile)
    try:
        return table.predict(arch, height, width, measure_missing=measure)
    except LatencyError:
        wanted = [key for key, _ in table.keys(arch, height, width)]
        gaps = table.missing(wanted)
        if not gaps:
            raise
    raise LatencyError(
        f"the lookup table for {profile} lacks {len(gaps)} of the {len(wanted)} op keys of {arch.describe()} "
        f"at {height}x{width} (e.g. {gaps[0]}); {fill_hint(device_name, height, width, threads, precision)}"
    )


def fill_space_table(
    store: Store,
    space: SearchSpace,
    height: int,
    width: int,
    threads: int = 1,
    *,
    runs: int = 5,
    verbose: bool = True,
    precision: str = Precision.FP32,
) -> tuple[int, int]:
    """Measure on this host every lookup-table key of `space` at height x width that the store lacks.

    Keys this machine measured before, for any store, are copied from its table
    (`nnsearch.latency.machine_table`) instead. Keys are stored one by one, so an
    interrupted fill keeps what it measured. Returns (measured, total keys).
    """
    from nnsearch.common.progress import progress

    keys = space_keys(space, height, width)
    backend = lut_backend(store)
    table = LatencyTable(host_profile(threads, HOST_DEVICE, precision), backend, runs=runs)
    todo = table.missing(keys)
    if backend.copied and verbose and backend.machine is not None:
        print(
            f"lookup table: copied {backend.copied} entries at {height}x{width} measured earlier on this machine "
            f"({backend.machine.path})",
            flush=True,
        )
    desc = f"lookup table {height}x{width}{Precision.parse(precision).label()}"
    for key in progress(todo, total=len(todo), desc=desc, enabled=verbose and bool(todo)):
        table.build([key])
    if todo:
        clear_caches()  # cached tables re-read the new entries
    return len(todo), len(keys)


def fill_hint(device_name: str, height: int, width: int, threads: int, precision: str = Precision.FP32) -> str:
    """How to fill a device's table, for error messages."""
    flag = Precision.parse(precision).label(" --precision ")
    if device_name == HOST_DEVICE:
        return (
            f"run `nnsearch lut build --device {HOST_DEVICE} --space SPACE --resolution {height}x{width} "
            f"--threads {threads}{flag}`"
        )
    return (
        f"run `nnsearch lut export-probes --space SPACE --resolution {height}x{width} --out probes{flag}`, time "
        f"the probes on the device with benchmark_model --num_threads={threads}, then "
        f"`nnsearch lut import latencies.csv --device {device_name} --threads {threads}{flag}`"
    )


def prediction_record(
    store: Store,
    latency_ms: float,
    device_name: str,
    height: int,
    width: int,
    threads: int = 1,
    precision: str = Precision.FP32,
) -> LatencyRecord:
    """A `LatencyRecord` of kind 'predicted' for a `predict_latency` result (e.g. for a ModelRecord).

    The prediction estimates the whole model's minimum over runs (the statistic
    the table sums), so it goes into `min_ms` as well as `median_ms`.
    """
    profile = resolve_profile(store, device_name, threads, precision)
    return LatencyRecord(
        device=profile.name,
        runtime=profile.runtime,
        runtime_version=profile.runtime_version,
        threads=profile.threads,
        height=height,
        width=width,
        kind="predicted",
        median_ms=float(latency_ms),
        min_ms=float(latency_ms),
        runs=0,
        precision=precision,
    )


def measured_record(
    timing: Timing, device_name: str, height: int, width: int, precision: str = Precision.FP32
) -> LatencyRecord:
    """A `LatencyRecord` of kind 'measured' for a whole-model `Timing` at height x width."""
    return LatencyRecord(
        device=device_name,
        runtime=timing.runtime,
        runtime_version=timing.runtime_version,
        threads=timing.threads,
        height=height,
        width=width,
        kind="measured",
        precision=precision,
        **timing.stat_values(),
    )


def record_latency(store: Store, nn: str, record: LatencyRecord) -> None:
    """Write one `latency_run` row for the stored model `nn`."""
    if store.reading(lambda conn: conn.scalar(select(NN.name).where(NN.name == nn))) is None:
        raise StoreError(f"no model '{nn}' in {store.display_url}; record the model before its latency")
    row = {**dataclasses.asdict(record), "nn": nn, "created_at": record.created_at or utcnow()}
    record_bundle(store, Bundle(latencies=[row]))


def record_prediction(
    store: Store, nn: str, latency_ms: float, device_name: str, height: int, width: int, threads: int = 1
) -> LatencyRecord:
    """Record a predicted latency of the stored model `nn` (a `latency_run` row, kind 'predicted')."""
    record = prediction_record(store, latency_ms, device_name, height, width, threads)
    record_latency(store, nn, record)
    return record


def profile_nn(
    store: Store,
    nn: str,
    height: int,
    width: int,
    *,
    threads: int = 1,
    runs: int = 10,
    warmup: int = 2,
    device_name: str = HOST_DEVICE,
) -> LatencyRecord:
    """Time a stored model whole on this host (random weights) and record it as a 'measured' latency_run."""
    arch = stored_arch(store, nn)
    check_resolution(arch.min_divisor, height, width, f"model '{nn}' ({arch.describe()})")
    with tempfile.TemporaryDirectory(prefix="nnsearch-profile-") as folder:
        path = export_tflite(
            build_student(arch).eval(), Path(folder) / "model.tflite", (1, arch.in_channels, height, width)
        )
        timing = time_tflite(path, runs=runs, warmup=warmup, threads=threads)
    record = measured_record(timing, device_name, height, width)
    record_latency(store, nn, record)
    return record
