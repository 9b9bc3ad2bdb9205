"""Per-layer latency lookup tables: device profiles, measurement, prediction, calibration.

A student at an input resolution decomposes into `OpKey`s (`nnsearch.latency.probes`:
op, input size, channels, kernel, stride, fused activation). The table holds
one timing per key and device profile (name, runtime, runtime version,
threads); a prediction is the sum of the entries of a student's keys, times an
optional scale. Missing keys are measured on this host by timing one-op probe
models, or imported from a CSV measured elsewhere (`import_latencies`).

Statistic. An entry records the median, minimum and maximum over its timed
runs (`median_ms`, `min_ms`, `max_ms`; pooled over passes as median of
medians, overall min and max). Predictions sum `LutEntry.ms`, the minimum
(the median when an imported row has no minimum), and whole models are
compared by their minimum too (`LatencyStat.ms`, the one statistic of
`nnsearch.store.stat` that entries, timings and stored figures share). On this host, with one
thread, runs are timed on the invoking thread's CPU clock
(`nnsearch.latency.tflite.resolve_clock`), so time spent descheduled while other
processes run is not counted. What remains of contention (cache and memory
traffic of the neighbours, cache refills after each preemption) only ever
adds time, so the minimum is the least disturbed estimate: on the busy 2-core
guest, the whole models' median CPU time read 22-25% above the table's sum of
minimums, their minimum 4-7% (benchmarks/latency_accuracy.py --quick), while
their wall-clock time was about twice their CPU time.

Calibration form: one multiplicative scale, `fit_scale` (median of measured /
predicted over a few calibration students that are excluded from any test).
A scale absorbs what is proportional to the work: another clock or delegate
than the probes', partition and cache effects of the whole graph, and the
extra cache refills a long whole-model run suffers on a loaded machine compared
with short probes. The ops besides convolutions (CONCATENATION, ADD, RESIZE,
MAX_POOL, the clamp; the PAD before a strided conv is timed inside that conv's
probe) are keyed and probed like the convs and together are a few percent of
a student's time, and the graph's input and output copies happen outside the
timed invoke, so no per-op overhead is left to model. Fitted on six calibration students
and tested on 30 others (benchmarks/latency_accuracy.py, four --quick runs at
272x480 and one at 1088x1920, mostly on a loaded machine), the share within
+-10% averaged 0.47 for per-op-type factors (they fit the timing noise), 0.73
for a scale plus intercept, 0.77 for the scale alone and 0.75 for the plain
sum (per run: scale 0.90, 0.70, 0.73, 0.73, 0.77; plain 0.80, 0.77, 0.73, 0.60,
0.87): on this host the residual error is timing noise (the same students timed
twice agreed no better), not a form a calibration could learn, and the scale
is no reliable gain. So the search uses the plain sum (scale 1), and
`LatencyTable.calibrate` offers the one-parameter form, whose median also ignores an outlying calibration timing, for devices
whose probes and whole graphs run differently.

Entries live behind a `LutBackend` (get / put); `MemoryBackend` keeps them in a
dict, `nnsearch.latency.stored_table.SqlLutBackend` in the store's `latency_lut`
table. The key decomposition is cached per (Arch, height, width) and entries
are cached in the table object, so a prediction with every entry present is a
dictionary walk (tens of microseconds).
"""

from __future__ import annotations

import csv
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nnsearch.common.precision import Precision
from nnsearch.errors import LatencyError
from nnsearch.latency.probes import KEY_COLUMNS, ArchKeys, OpKey, arch_keys, key_from_row, write_probe
from nnsearch.latency.tflite import RUNTIME, runtime_version, time_tflite
from nnsearch.model.arch import Arch
from nnsearch.store.stat import LatencyStat

__all__ = [
    "DeviceProfile",
    "LatencyTable",
    "LutBackend",
    "LutEntry",
    "MemoryBackend",
    "OpKey",
    "arch_keys",
    "combine_entries",
    "fit_scale",
    "host_profile",
    "import_latencies",
    "measure_keys",
    "time_probe",
]


@dataclass(frozen=True)
class DeviceProfile:
    """Where latencies hold: a device name, the runtime and its version, the thread count, the precision.

    `precision` (a `nnsearch.common.precision.Precision`) is the precision
    of the probes and models timed: each precision has its own table.
    """

    name: str
    runtime: str
    runtime_version: str
    threads: int
    precision: str = Precision.FP32

    def __str__(self) -> str:
        extra = Precision.parse(self.precision).label(", ")
        return f"{self.name} ({self.runtime}, {self.runtime_version}, {self.threads} thread(s){extra})"


def host_profile(threads: int = 1, name: str = "host-cpu", precision: str = Precision.FP32) -> DeviceProfile:
    """The profile of this machine's ai-edge-litert CPU interpreter (at one precision)."""
    return DeviceProfile(name, RUNTIME, runtime_version(), int(threads), Precision.parse(precision))


def can_measure(device: DeviceProfile) -> bool:
    """Whether probes timed here are valid for `device` (same runtime and version)."""
    return device.runtime == RUNTIME and device.runtime_version == runtime_version()


def require_host(device: DeviceProfile) -> None:
    """LatencyError unless this host can measure latencies for `device`."""
    if not can_measure(device):
        raise LatencyError(
            f"latencies for {device} cannot be measured on this host ({RUNTIME}, "
            f"{runtime_version()}); measure the exported probes there and import_latencies()"
        )


@dataclass(frozen=True)
class LutEntry(LatencyStat):
    """The latency of one key on one device profile (a `LatencyStat`; predictions sum its `ms`)."""

    device: DeviceProfile
    key: OpKey
    source: str = "measured"  # "measured" on this host or "imported" from a CSV


class LutBackend(Protocol):
    """Storage of lookup-table entries."""

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        """The stored entries among `keys` for `device` (absent keys are left out)."""

    def put(self, entries: Iterable[LutEntry]) -> None:
        """Store entries, replacing any with the same device profile and key."""


class MemoryBackend:
    """A `LutBackend` in a dict (tests, one-off runs)."""

    def __init__(self, entries: Iterable[LutEntry] = ()) -> None:
        self._rows: dict[tuple[DeviceProfile, OpKey], LutEntry] = {}
        self.put(entries)

    def get(self, device: DeviceProfile, keys: Iterable[OpKey]) -> dict[OpKey, LutEntry]:
        found = ((key, self._rows.get((device, key))) for key in keys)
        return {key: entry for key, entry in found if entry is not None}

    def put(self, entries: Iterable[LutEntry]) -> None:
        self._rows.update(((e.device, e.key), e) for e in entries)

    def __len__(self) -> int:
        return len(self._rows)


Progress = Callable[[int, int], None]


#: A probe is timed until its runs add up to this many ms (short probes get more runs, up to 200).
PROBE_MIN_TOTAL_MS = 40.0


def measure_keys(
    keys: Sequence[OpKey],
    device: DeviceProfile,
    *,
    runs: int = 5,
    warmup: int = 1,
    passes: int = 1,
    progress: Progress | None = None,
) -> list[LutEntry]:
    """Time the probe of every key on this host.

    With `passes` > 1 all keys are timed in turn, then again, so a slow moment
    of the machine hits every key a little instead of one key a lot; the
    passes are pooled with `combine_entries`.
    """
    require_host(device)
    entries: list[LutEntry] = []
    with tempfile.TemporaryDirectory(prefix="nnsearch-probes-") as folder:
        paths = {key: write_probe(key, folder, device.precision) for key in keys}
        for _ in range(passes):
            for key, path in paths.items():
                entries.append(time_probe(path, key, device, runs=runs, warmup=warmup))
                if progress is not None:
                    progress(len(entries), len(paths) * passes)
    return combine_entries(entries)


def time_probe(
    path: str | Path,
    key: OpKey,
    device: DeviceProfile,
    *,
    runs: int = 5,
    warmup: int = 1,
    min_total_ms: float = PROBE_MIN_TOTAL_MS,
) -> LutEntry:
    """Time one written probe file (see `lut_probes.write_probe`) as the entry of `key`."""
    require_host(device)
    timing = time_tflite(path, runs=runs, warmup=warmup, threads=device.threads, min_total_ms=min_total_ms)
    return LutEntry(device, key, **timing.stat_values())


def combine_entries(entries: Iterable[LutEntry]) -> list[LutEntry]:
    """Pool repeated entries of one (device, key): median of medians, overall min and max, summed runs."""
    groups: dict[tuple[DeviceProfile, OpKey], list[LutEntry]] = {}
    for entry in entries:
        groups.setdefault((entry.device, entry.key), []).append(entry)
    return [
        LutEntry(device, key, group[0].source, **LatencyStat.pooled(group).stat_values())
        for (device, key), group in groups.items()
    ]


def fit_scale(measured_ms: Sequence[float], predicted_ms: Sequence[float]) -> float:
    """Calibration scale: the median of measured / predicted ratios (see the module docstring)."""
    ratios = [m / p for m, p in zip(measured_ms, predicted_ms, strict=True) if p > 0 and m > 0]
    if not ratios:
        raise LatencyError("calibration needs at least one model with positive measured and predicted latency")
    return float(statistics.median(ratios))


class LatencyTable:
    """Lookup-table latency predictor for one device profile over a backend."""

    def __init__(
        self,
        device: DeviceProfile,
        backend: LutBackend | None = None,
        *,
        scale: float = 1.0,
        runs: int = 5,
        warmup: int = 1,
        passes: int = 1,
    ) -> None:
        self.device = device
        self.backend: LutBackend = backend if backend is not None else MemoryBackend()
        self.scale = float(scale)
        self.runs, self.warmup, self.passes = runs, warmup, passes
        self._ms: dict[OpKey, float] = {}

    def missing(self, keys: Iterable[OpKey]) -> list[OpKey]:
        """Keys with no entry, after asking the backend for the ones not cached yet."""
        unknown = sorted({key for key in keys if key not in self._ms})
        if unknown:
            self._ms.update({k: e.ms for k, e in self.backend.get(self.device, unknown).items()})
        return [key for key in unknown if key not in self._ms]

    def build(self, keys: Iterable[OpKey], progress: Progress | None = None) -> list[LutEntry]:
        """Measure the keys that have no entry yet, store them and return the new entries."""
        todo = self.missing(keys)
        if not todo:
            return []
        entries = measure_keys(
            todo, self.device, runs=self.runs, warmup=self.warmup, passes=self.passes, progress=progress
        )
        self.add(entries)
        return entries

    def add(self, entries: Iterable[LutEntry]) -> None:
        """Store entries (e.g. from `import_latencies`) in the backend and the cache."""
        entries = [e for e in entries if e.device == self.device]
        self.backend.put(entries)
        self._ms.update((e.key, e.ms) for e in entries)

    def keys(self, arch: Arch, height: int, width: int) -> ArchKeys:
        """(key, count) pairs of a student at a resolution (cached)."""
        return arch_keys(arch, int(height), int(width))

    def sum_ms(self, keys: ArchKeys, measure_missing: bool = False) -> float:
        """Plain sum of entry latencies (`LutEntry.ms`) over (key, count) pairs, without the scale."""
        try:
            return sum(self._ms[key] * count for key, count in keys)
        except KeyError:
            pass
        wanted = [key for key, _ in keys]
        if measure_missing:
            self.build(wanted)
        gaps = self.missing(wanted)
        if gaps:
            raise LatencyError(
                f"the lookup table for {self.device} lacks {len(gaps)} of {len(wanted)} keys "
                f"(e.g. {gaps[0]}); build it on the device or import measured latencies"
            )
        return sum(self._ms[key] * count for key, count in keys)

    def predict(self, arch: Arch, height: int, width: int, *, measure_missing: bool = False) -> float:
        """Predicted latency in ms of `arch` at height x width: scale * sum of entries."""
        return self.scale * self.sum_ms(self.keys(arch, height, width), measure_missing)

    def calibrate(self, samples: Iterable[tuple[Arch, int, int, float]]) -> float:
        """Fit and set `scale` from (arch, height, width, measured ms) samples; returns it."""
        samples = list(samples)
        sums = [self.sum_ms(self.keys(a, h, w)) for a, h, w, _ in samples]
        self.scale = fit_scale([ms for *_, ms in samples], sums)
        return self.scale


def import_latencies(csv_path: str | Path, device: DeviceProfile) -> list[LutEntry]:
    """Entries from a CSV with the manifest's key columns and `median_ms` (optional min_ms, max_ms, runs)."""
    path = Path(csv_path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            absent = [c for c in (*KEY_COLUMNS, "median_ms") if c not in (reader.fieldnames or [])]
            if absent:
                raise LatencyError(f"{path} lacks column(s) {absent}; expected {[*KEY_COLUMNS, 'median_ms']}")
            return [_entry_from_row(row, device, f"{path}:{line}") for line, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise LatencyError(f"cannot read latency CSV {path}: {exc}") from None


def _optional(value: str | None, kind: type[float] | type[int]) -> float | int | None:
    return kind(value) if value not in (None, "") else None


def _entry_from_row(row: dict[str, str], device: DeviceProfile, where: str) -> LutEntry:
    try:
        entry = LutEntry(
            device,
            key_from_row(row),
            "imported",
            median_ms=float(row["median_ms"]),
            min_ms=_optional(row.get("min_ms"), float),
            max_ms=_optional(row.get("max_ms"), float),
            runs=int(row.get("runs") or 0) or 1,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LatencyError(f"{where}: bad latency row {dict(row)}: {exc}") from None
    if not entry.median_ms >= 0:
        raise LatencyError(f"{where}: median_ms must be >= 0, got {entry.median_ms}")
    return entry
