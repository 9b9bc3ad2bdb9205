"""`nnsearch lut build|export-probes|import|show` and `nnsearch profile`: latency tables and timings."""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

from nnsearch.commands import add_db_option, add_out_option, add_precision_option, parse_precision, parse_resolution
from nnsearch.errors import NNSearchError

#: Runtime recorded for latencies imported from TFLite's benchmark_model (unless --runtime says otherwise).
IMPORT_RUNTIME = "tflite-benchmark_model"
_ACTIVATIONS = ("NONE", "RELU")


def cmd_build(args: argparse.Namespace) -> int:
    from nnsearch.latency.agents.service import fill_device_table, served_by_agents
    from nnsearch.latency.probes import space_keys
    from nnsearch.latency.service import HOST_DEVICE, fill_space_table
    from nnsearch.model.space import load_space
    from nnsearch.store.engine import Store

    height, width = parse_resolution(args.resolution)
    precision = parse_precision(args.precision)
    space = load_space(args.space)
    store = Store(args.db)
    start = time.perf_counter()
    try:
        agents = args.device != HOST_DEVICE and served_by_agents(store, args.device)
        if args.device != HOST_DEVICE and not agents:
            raise NNSearchError(
                f"`lut build` measures on this host ('{HOST_DEVICE}') or through the measurement "
                f"agents of a device, and no agent serves '{args.device}' in {store.display_url}; "
                f"start `nnsearch agent --device {args.device}` where the device is, or use "
                f"`nnsearch lut export-probes`, time the probes there and `nnsearch lut import`"
            )
        where = "by its agents" if agents else "on this host"
        print(
            f"space '{space.name}' at {height}x{width} on {args.device} ({where}) with {args.threads} thread(s), "
            f"{precision}",
            flush=True,
        )
        if agents:
            measured, total = fill_device_table(
                store, args.device, space_keys(space, height, width), args.threads, precision
            )
        else:
            measured, total = fill_space_table(
                store, space, height, width, args.threads, runs=args.runs, precision=precision
            )
    finally:
        store.dispose()
    seconds = time.perf_counter() - start
    print(
        f"lut build: measured {measured}, reused {total - measured} of {total} keys "
        f"in {seconds:.1f} s ({store.display_url})"
    )
    return 0


def cmd_export_probes(args: argparse.Namespace) -> int:
    from nnsearch.latency.probes import export_probes
    from nnsearch.model.space import load_space

    height, width = parse_resolution(args.resolution)
    precision = parse_precision(args.precision)
    manifest = export_probes(load_space(args.space), (height, width), args.out, precision=precision)
    with manifest.open(newline="") as handle:
        count = sum(1 for _ in csv.DictReader(handle))
    print(f"lut export-probes: wrote {count} probe(s) ({precision}) and {manifest}")
    return 0


def check_latency_csv(path: Path) -> None:
    """LatencyError naming the file, line and column of the first bad value of a latency CSV.

    Unreadable files and missing columns are left to `import_latencies`, which reports them.
    """
    from nnsearch.errors import LatencyError
    from nnsearch.latency.probes import KEY_COLUMNS
    from nnsearch.latency.tflite import NATIVE_OPS
    from nnsearch.store.limits import check_row  # the lookup table's columns bound every integer
    from nnsearch.store.schema import LatencyLUT

    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = set(reader.fieldnames or [])
            if not {*KEY_COLUMNS, "median_ms"} <= header:
                return
            checks = {c: _count for c in KEY_COLUMNS if c not in ("op", "activation")}
            checks.update(op=_choice(sorted(NATIVE_OPS)), activation=_choice(_ACTIVATIONS), median_ms=_ms)
            checks.update(
                {c: _optional(f) for c, f in (("min_ms", _ms), ("max_ms", _ms), ("runs", _count)) if c in header}
            )
            rows = 0
            for line, row in enumerate(reader, start=2):
                rows += 1
                for column, check in checks.items():
                    problem = check(row.get(column))
                    if problem:
                        raise LatencyError(f"{path}:{line}: column '{column}' {problem}")
                check_row(
                    LatencyLUT.__table__,
                    {c: int(row[c]) for c in _INT_COLUMNS if row.get(c) not in (None, "")},
                    f"{path}:{line}",
                )
    except OSError:
        return
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LatencyError(f"{path} is not a readable CSV file: {exc}") from None
    if rows == 0:
        raise LatencyError(f"{path} has a header but no latency rows")


#: Integer columns of a latency CSV.
_INT_COLUMNS = ("in_h", "in_w", "in_c", "out_c", "kernel", "stride", "runs")


def _count(value: str | None) -> str | None:
    try:
        return None if int(str(value).strip()) >= 0 else f"is {value!r}, expected an integer >= 0"
    except ValueError:
        return f"is {value!r}, expected an integer >= 0"


def _ms(value: str | None) -> str | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    return None if math.isfinite(number) and number >= 0 else f"is {value!r}, expected milliseconds >= 0"


def _choice(allowed: tuple[str, ...] | list[str]):  # -> check function
    def check(value: str | None) -> str | None:
        ok = value is not None and value.strip().upper() in allowed
        return None if ok else f"is {value!r}, expected one of {list(allowed)}"

    return check


def _optional(check):  # -> check function that accepts an empty cell
    return lambda value: None if value in (None, "") else check(value)


def cmd_import(args: argparse.Namespace) -> int:
    from nnsearch.latency.stored_table import SqlLutBackend
    from nnsearch.latency.table import DeviceProfile, import_latencies
    from nnsearch.store.engine import Store
    from nnsearch.store.limits import check_row
    from nnsearch.store.schema import LatencyLUT

    path = Path(args.file)
    check_latency_csv(path)
    device = DeviceProfile(
        args.device, args.runtime, args.runtime_version, args.threads, parse_precision(args.precision)
    )
    check_row(
        LatencyLUT.__table__,
        {
            "device": device.name,
            "runtime": device.runtime,
            "runtime_version": device.runtime_version,
            "threads": device.threads,
        },
        "lut import options",
    )
    entries = import_latencies(path, device)
    store = Store(args.db)
    try:
        SqlLutBackend(store).put(entries)
    finally:
        store.dispose()
    print(f"lut import: {len(entries)} entries for {device} from {path} ({store.display_url})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nnsearch.commands.agent import status_lines
    from nnsearch.latency.stored_table import lut_summary
    from nnsearch.store.engine import Store

    store = Store(args.db, create=False)
    try:
        rows = lut_summary(store, args.device)
        # a device's measurement jobs and its table's prediction error (every device has the latter)
        status = status_lines(store, args.device) if args.device else []
    finally:
        store.dispose()
    if not rows:
        print(f"no lookup-table entries{f' for device {args.device!r}' if args.device else ''} in {store.display_url}")
    for row in rows:
        sources = ", ".join(f"{n} {s}" for s, n in sorted(row["sources"].items()))
        ops = ", ".join(f"{op} {n}" for op, n in sorted(row["ops"].items()))
        print(
            f"{row['device']}: {row['entries']} entries ({sources}); sum of entries (min) {row['total_ms']:.1f} ms\n"
            f"    ops: {ops}"
        )
    for line in status:
        print(line)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from nnsearch.latency.service import profile_nn
    from nnsearch.latency.tflite import resolve_clock
    from nnsearch.store.engine import Store

    height, width = parse_resolution(args.resolution)
    store = Store(args.db, create=False)
    try:
        rec = profile_nn(
            store,
            args.nn,
            height,
            width,
            threads=args.threads,
            runs=args.runs,
            warmup=args.warmup,
            device_name=args.device,
        )
    finally:
        store.dispose()
    print(
        f"profile {args.nn}: min {rec.min_ms:.2f} ms (median {rec.median_ms:.2f}, max {rec.max_ms:.2f}) over "
        f"{rec.runs} runs at {height}x{width}, {rec.threads} thread(s), {resolve_clock('auto', rec.threads)} clock, "
        f"{rec.runtime_version} on {rec.device}; recorded in latency_run"
    )
    return 0


def _resolution_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="litedenoise", help="search-space YAML file or name in search_spaces/")
    parser.add_argument("--resolution", default="1088x1920", help="input HEIGHTxWIDTH (default 1088x1920)")


def register(sub: argparse._SubParsersAction) -> None:
    lut = sub.add_parser("lut", help="per-layer latency lookup tables: build, export probes, import, show")
    lut_sub = lut.add_subparsers(dest="lut_command", required=True, metavar="ACTION")

    build = lut_sub.add_parser(
        "build",
        help="measure the missing entries a search space needs (on this host, or by a device's measurement agents)",
    )
    build.add_argument(
        "--device",
        default="host-cpu",
        help="device profile name: host-cpu (measured here) or a device served by `nnsearch agent`",
    )
    _resolution_args(build)
    build.add_argument("--threads", type=int, default=1)
    build.add_argument("--runs", type=int, default=5, help="timed calls per probe, more if short (minimum kept)")
    add_precision_option(build, "precision of the probes (each precision has its own table)")
    add_db_option(build)
    build.set_defaults(handler=cmd_build)

    probes = lut_sub.add_parser("export-probes", help="write one-op .tflite probes and manifest.csv for a device")
    _resolution_args(probes)
    add_out_option(probes, "folder the probes and manifest.csv are written to", required=True)
    add_precision_option(probes, "precision the probes are quantized to (as students are)")
    probes.set_defaults(handler=cmd_export_probes)

    imp = lut_sub.add_parser("import", help="load latencies measured elsewhere (manifest columns + median_ms)")
    imp.add_argument("file", help="CSV with the manifest's key columns and median_ms (optional min_ms, max_ms, runs)")
    imp.add_argument("--device", required=True, help="device profile name, e.g. phone-x")
    imp.add_argument("--threads", type=int, default=1, help="threads the latencies were measured with")
    imp.add_argument("--runtime", default=IMPORT_RUNTIME, help=f"runtime name (default {IMPORT_RUNTIME})")
    imp.add_argument("--runtime-version", default="unspecified", help="runtime version, e.g. tflite 2.16")
    add_precision_option(imp, "precision of the timed probes")
    add_db_option(imp)
    imp.set_defaults(handler=cmd_import)

    show = lut_sub.add_parser(
        "show",
        help="summary of stored entries per device profile (with --device: its "
        "measurement jobs and prediction error too)",
    )
    show.add_argument("--device", default=None, help="only this device name")
    add_db_option(show)
    show.set_defaults(handler=cmd_show)

    profile = sub.add_parser("profile", help="time a recorded student whole on this host and record it")
    profile.add_argument("nn", help="model name (nn.name)")
    profile.add_argument("--resolution", default="1088x1920", help="input HEIGHTxWIDTH (default 1088x1920)")
    profile.add_argument("--threads", type=int, default=1)
    profile.add_argument("--runs", type=int, default=10)
    profile.add_argument("--warmup", type=int, default=2)
    profile.add_argument("--device", default="host-cpu", help="device name the timing is recorded under")
    add_db_option(profile)
    profile.set_defaults(handler=cmd_profile)
