"""On-device runtimes of the NN Dataset (`stat/run/`) as latency runs, and back.

Layout: `stat/run/<runtime>/<precision>/<task>_<dataset>_<metric>_<nn>/<os>_<device>.json`
(e.g. `tflite/int8/.../android_SM-P613.json`), one JSON object per file with a
`<unit>_duration`, `<unit>_min_duration`, `<unit>_max_duration` per compute unit
(cpu, gpu, npu), `iterations`, optionally `in_dim_0..3` (NHWC input) and
`device_analytics.timestamp`. Fields labelled ms hold nanoseconds, as every
duration there does. Each unit becomes one 'measured' `latency_run`: device
`<os>_<device>-<unit>`, the runtime and precision of the folders,
runtime_version `nn-dataset` (it marks the run as the NN Dataset's, and export
writes it back there), threads 0 (not recorded), the mean in `median_ms`
(the files give means), and the measuring time (1970-01-01 when not recorded).
Files marked `"valid": false` and units whose benchmark status is not "ok" are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nnsearch.common.paths import safe_component
from nnsearch.errors import StoreError

UNITS = ("cpu", "gpu", "npu")
#: `latency_run.runtime_version` of runtimes imported from the NN Dataset.
NND_RUNTIME_VERSION = "nn-dataset"
UNKNOWN_TIME = datetime(1970, 1, 1)
_NS_PER_MS = 1e6


def read_run_tree(
    run_dir: Path,
    read_json: Callable[[Path], Any],
    skip: Callable[[Path], None],
    model_of: Callable[[Path], str | None],
) -> list[dict[str, Any]]:
    """`latency_run` rows (with `nn` and `config`) of every runtime file under `run_dir`.

    `skip(path)` is told of each entry that is not a runtime file; `model_of(config_dir)`
    gives the model name of a `<task>_<dataset>_<metric>_<nn>` folder (None: not one).
    """
    rows: list[dict[str, Any]] = []
    for runtime_dir in _entries(run_dir, skip, folders=True):
        for precision_dir in _entries(runtime_dir, skip, folders=True):
            for config_dir in _entries(precision_dir, skip, folders=True):
                nn = model_of(config_dir)
                if nn is None:
                    skip(config_dir)
                    continue
                for path in _entries(config_dir, skip, folders=False):
                    found = run_rows(path, read_json(path), runtime_dir.name, precision_dir.name, nn)
                    if found is None:
                        skip(path)
                    rows.extend({**row, "config": config_dir.name} for row in found or [])
    return rows


def _entries(folder: Path, skip: Callable[[Path], None], folders: bool) -> Iterable[Path]:
    """Visible sub-folders (or `.json` files) of `folder`; anything else is skipped."""
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        wanted = path.is_dir() if folders else (path.is_file() and path.suffix == ".json")
        if wanted:
            yield path
        else:
            skip(path)


def run_rows(path: Path, record: Any, runtime: str, precision: str, nn: str) -> list[dict[str, Any]] | None:
    """The latency rows of one runtime file; None when it is not one (no unit durations, or marked invalid)."""
    if not isinstance(record, dict) or record.get("valid") is False:
        return None
    benchmark: dict[str, Any] = record["benchmark"] if isinstance(record.get("benchmark"), dict) else {}
    stamp = (
        (record.get("device_analytics") or {}).get("timestamp")
        if isinstance(record.get("device_analytics"), dict)
        else None
    )
    base = {
        "nn": nn,
        "runtime": runtime,
        "runtime_version": NND_RUNTIME_VERSION,
        "precision": precision,
        "threads": 0,
        "kind": "measured",
        "height": _count(path, record, "in_dim_1", 0),
        "width": _count(path, record, "in_dim_2", 0),
        "runs": _count(path, record, "iterations", 0),
        "created_at": _time(path, stamp),
    }
    rows = []
    for unit in UNITS:
        if record.get(f"{unit}_duration") is None:
            continue
        status = (benchmark.get(unit) or {}).get("status", "ok") if isinstance(benchmark.get(unit), dict) else "ok"
        if status != "ok":
            continue
        rows.append(
            {
                **base,
                "device": f"{path.stem}-{unit}",
                "median_ms": _ms(path, record, f"{unit}_duration"),
                "min_ms": _ms(path, record, f"{unit}_min_duration", optional=True),
                "max_ms": _ms(path, record, f"{unit}_max_duration", optional=True),
            }
        )
    return rows or None


def _ms(path: Path, record: Mapping[str, Any], key: str, optional: bool = False) -> float | None:
    value = record.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise StoreError(f"{path}: '{key}' must be a duration in nanoseconds (a number >= 0), got {value!r}")
    return value / _NS_PER_MS


def _count(path: Path, record: Mapping[str, Any], key: str, default: int) -> int:
    value = record.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(f"{path}: '{key}' must be a whole number >= 0, got {value!r}")
    return value


def _time(path: Path, stamp: Any) -> datetime:
    if stamp is None:
        return UNKNOWN_TIME
    if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
        raise StoreError(f"{path}: 'device_analytics.timestamp' must be seconds since 1970, got {stamp!r}")
    return datetime.fromtimestamp(stamp, timezone.utc).replace(tzinfo=None)


def is_nnd_run(run: Mapping[str, Any]) -> bool:
    """Whether a latency run came from (and is exported back to) the NN Dataset's `stat/run/`."""
    return run["runtime_version"] == NND_RUNTIME_VERSION and run["device"].rpartition("-")[2] in UNITS


def run_files(runs: Iterable[Mapping[str, Any]], config_of: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Relative path under `stat/run/` -> file content, for the NN Dataset's runs among `runs`.

    `config_of`: nn -> its `<task>_<dataset>_<metric>_<nn>` folder name. Per
    file, the latest run of each unit is written.
    """
    files: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r["created_at"]):
        stem, _, unit = run["device"].rpartition("-")
        if not is_nnd_run(run) or run["nn"] not in config_of:
            continue
        for key, name in (("runtime", run["runtime"]), ("precision", run["precision"]), ("device", stem)):
            safe_component(name, f"cannot export the latency runs of {run['nn']}: {key}")
        path = f"{run['runtime']}/{run['precision']}/{config_of[run['nn']]}/{stem}.json"
        record = files.setdefault(
            path,
            {
                "model_name": run["nn"],
                "precision": run["precision"],
                "device_type": stem.partition("_")[2] or stem,
                "valid": True,
            },
        )
        record["iterations"] = int(run["runs"])
        if run["height"]:
            record.update({"in_dim_0": 1, "in_dim_1": int(run["height"]), "in_dim_2": int(run["width"]), "in_dim_3": 3})
        for key, column in (("duration", "median_ms"), ("min_duration", "min_ms"), ("max_duration", "max_ms")):
            if run[column] is not None:
                record[f"{unit}_{key}"] = round(run[column] * _NS_PER_MS)
        record["duration"] = min(record[f"{u}_duration"] for u in UNITS if f"{u}_duration" in record)
        if run["created_at"] != UNKNOWN_TIME:
            seconds = run["created_at"].replace(tzinfo=timezone.utc).timestamp()
            record["device_analytics"] = {"timestamp": seconds}
    return files
