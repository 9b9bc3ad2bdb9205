"""`nnsearch query`, `check`, `import-nnd` and `export-nnd`: read, verify and exchange the store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nnsearch.commands import add_db_option, add_trust_option
from nnsearch.errors import NNSearchError


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The data() filters given on the command line (repeatable options mean "any of")."""
    names = ("task", "dataset", "metric", "nn", "epoch", "study")
    return {n: tuple(getattr(args, n)) for n in names if getattr(args, n)}


def _print_frame(frame: Any, fmt: str) -> None:
    if fmt == "csv":
        print(frame.to_csv(index=False), end="")
    elif fmt == "json":  # json.dumps keeps every float digit (DataFrame.to_json rounds)
        print(json.dumps([{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")], indent=1))
    else:
        print(frame.to_string(index=False) if len(frame) else "(no rows)")


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python, missing values as null, times as ISO text."""
    import pandas as pd

    if isinstance(value, dict | list | str) or value is None:
        return value
    if pd.isna(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def cmd_query(args: argparse.Namespace) -> int:
    from nnsearch.store.dataset_api import data
    from nnsearch.store.engine import Store
    from nnsearch.store.query import study_results

    filters = _filters(args)
    view = args.view or ("trials" if list(filters) == ["study"] and len(filters["study"]) == 1 else "stats")
    if view == "trials" and (set(filters) != {"study"} or len(filters["study"]) != 1):
        raise NNSearchError("--view trials shows one study: give exactly one --study and no other filter")
    store = Store(args.db, create=False)
    try:
        if view == "trials":
            frame = study_results(store, args.study[0], device=(args.device or ["host-cpu"])[0])
        else:
            frame = data(
                db=store, only_best_accuracy=args.only_best, max_rows=args.max_rows, device=args.device, **filters
            )
            if not args.code:
                frame = frame.drop(columns=["metric_code", "nn_code", "transform_code"])
        _print_frame(frame, args.format)
    finally:
        store.dispose()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nnsearch.search.lost_trials import find_lost_trials, repair_lost_trials
    from nnsearch.search.optuna_setup import optuna_storage
    from nnsearch.store.engine import Store
    from nnsearch.store.integrity import check_integrity

    store = Store(args.db, create=False)
    problems = check_integrity(store)
    grace = args.grace_period
    lost = find_lost_trials(store, grace)
    if args.repair and lost:
        repaired = repair_lost_trials(store, lost, optuna_storage(store))
        for trial in repaired:
            print(f"repaired: study {trial.study!r} trial {trial.number} failed, its retry is queued")
        lost = [trial for trial in lost if trial not in repaired]
    problems += [trial.line() for trial in lost]
    for line in problems:
        print(line)
    print(
        f"store {store.display_url}: " + (f"{len(problems)} problem(s)" if problems else "OK"),
        file=sys.stderr if problems else sys.stdout,
    )
    store.dispose()
    return 1 if problems else 0


def cmd_import_nnd(args: argparse.Namespace) -> int:
    from nnsearch.nnd.importing import import_nnd

    summary = import_nnd(args.directory, db=args.db, trust_code=args.trust_code)
    for warning in summary.warnings:
        print(f"nnsearch: warning: {warning}", file=sys.stderr)
    print(summary.line())
    return 0


def cmd_export_nnd(args: argparse.Namespace) -> int:
    from nnsearch.nnd.exporting import export_nnd
    from nnsearch.store.engine import Store

    store = Store(args.db, create=False)
    try:
        summary = export_nnd(args.directory, db=store, force=args.force, **_filters(args))
    finally:
        store.dispose()
    for warning in summary.warnings:
        print(f"nnsearch: warning: {warning}", file=sys.stderr)
    print(summary.line())
    return 0


def _add_filters(parser: argparse.ArgumentParser, study_help: str) -> None:
    for name in ("task", "dataset", "metric", "nn"):
        parser.add_argument(f"--{name}", action="append", help="keep rows with this value (repeat for any of)")
    parser.add_argument("--epoch", action="append", type=int, help="keep rows of this epoch (repeatable)")
    parser.add_argument("--study", action="append", help=study_help)


def register(sub: argparse._SubParsersAction) -> None:
    query = sub.add_parser("query", help="print recorded results (the data() query) or a study's trials")
    _add_filters(query, "keep the models this study's trials produced (repeatable)")
    query.add_argument(
        "--only-best", action="store_true", help="per task/dataset/metric/nn/epoch only the rows with the best accuracy"
    )
    query.add_argument("--max-rows", type=int, default=None)
    query.add_argument("--device", action="append", help="latency columns for this device profile (repeatable)")
    query.add_argument(
        "--view",
        choices=["stats", "trials"],
        default=None,
        help="stats: one row per stat (the data() query); trials: one row per trial of --study "
        "(final PSNR/SSIM, latency, size). Default: trials when --study is the only filter",
    )
    query.add_argument("--code", action="store_true", help="include the metric, model and transform code columns")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_db_option(query)
    query.set_defaults(handler=cmd_query)

    check = sub.add_parser(
        "check", help="check the store's integrity and find lost trials (exit 1 when a problem is found)"
    )
    check.add_argument(
        "--repair", action="store_true", help="fail RUNNING trials without a live heartbeat and queue their retries"
    )
    from nnsearch.search.config import HeartbeatConfig  # light: no torch, pandas or Optuna

    check.add_argument(
        "--grace-period",
        type=int,
        metavar="S",
        default=HeartbeatConfig().grace_s,
        help="a RUNNING trial silent for S seconds is lost (default %(default)s)",
    )
    add_db_option(check)
    check.set_defaults(handler=cmd_check)

    imp = sub.add_parser(
        "import-nnd",
        help="import NN Dataset statistics (stat/train/<task>_<dataset>_<metric>_<nn>/), "
        "on-device runtimes (stat/run/) and model code",
    )
    imp.add_argument("directory", help="the NN Dataset's ab/nn folder, a checkout holding it, or its stats folder")
    add_trust_option(
        imp,
        "rebuild img-denoising models from their Python files (count them, link them to a search-space architecture)",
    )
    add_db_option(imp)
    imp.set_defaults(handler=cmd_import_nnd)

    exp = sub.add_parser("export-nnd", help="write the store's records in the NN Dataset layout")
    exp.add_argument("directory", help="output folder (plays the role of the NN Dataset's ab/nn)")
    _add_filters(exp, "export only the models this study's trials produced (repeatable)")
    exp.add_argument(
        "--force",
        action="store_true",
        help="overwrite files in the folder that an earlier export did not write (default: refuse)",
    )
    add_db_option(exp)
    exp.set_defaults(handler=cmd_export_nnd)
