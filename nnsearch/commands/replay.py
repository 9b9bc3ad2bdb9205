"""`nnsearch replay`: compare samplers on a finished study used as a lookup table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nnsearch.commands import add_db_option, add_out_option, add_sampler_option


def cmd_replay(args: argparse.Namespace) -> int:
    from nnsearch.common.paths import default_results_root, safe_component
    from nnsearch.model.space import load_space
    from nnsearch.replay.compare import (
        check_samplers,
        parse_reference,
        replay,
        write_outputs,
    )
    from nnsearch.replay.table import ReplayTable
    from nnsearch.search.config import SAMPLER_NAMES
    from nnsearch.store.engine import Store

    samplers = check_samplers([name for given in args.sampler or SAMPLER_NAMES for name in given.split(",")])
    out = Path(args.out or default_results_root()) / safe_component(args.study, "study name") / "replay"
    reference = parse_reference(args.reference) if args.reference else None
    space = load_space(args.space) if args.space else None
    store = Store(args.db, create=False)
    try:
        print(f"store: {store.display_url}")
        table = ReplayTable.load(store, args.study, space=space, device=args.device)
    finally:
        store.dispose()
    outside = table.outside_space()
    print(
        f"study '{args.study}': {len(table)} recorded candidates; space {table.space.name} ({table.space.source})"
        + (f"; {outside} candidate(s) lie outside it" if outside else "")
    )
    result = replay(
        table,
        samplers,
        trials=args.trials,
        seeds=args.seeds,
        reference=reference,
        first_seed=args.first_seed,
        rule=args.neighbour,
    )
    print(
        "reference point: "
        + ", ".join(f"{c}={v:.6g}" for c, v in result.reference.items())
        + f"; hypervolume of the whole table {result.table_volume:.6g}"
    )
    seeds = sorted(set(result.runs["seed"]))
    print(
        f"{result.trials} trials x {len(seeds)} seed(s) ({seeds[0]}..{seeds[-1]}) per sampler, neighbour rule "
        f"'{result.rule}'; mean +- standard deviation over seeds"
    )
    print(result.table_text())
    for path in write_outputs(result, out):
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser: Any = sub.add_parser(
        "replay", help="compare samplers on a finished study by lookup instead of training (hypervolume per trial)"
    )
    parser.add_argument("--study", required=True, help="the recorded study to replay")
    add_sampler_option(parser, "a sampler to compare; repeat it for several (default: every one)", repeat=True)
    parser.add_argument(
        "--trials", type=int, default=None, help="trials per run (default: the number of recorded candidates)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="runs per sampler (default %(default)s)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=None,
        help="seeds are FIRST..FIRST+K-1 (default: nnsearch.replay.compare.FIRST_SEED, away from the "
        "seeds a study's own trials use)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="PSNR,LATENCY",
        help="hypervolume reference point (default: the lowest PSNR and highest latency on the "
        "table's Pareto front, pushed 10%% of the front's range further)",
    )
    parser.add_argument(
        "--neighbour",
        default="distinct",
        metavar="RULE",
        help="how an unrecorded proposal is answered: the nearest recorded student no other "
        "proposal of the run got (distinct), or the nearest one (nearest); default %(default)s",
    )
    parser.add_argument(
        "--space", default=None, help="search-space file or name (default: the study's own, read from the store)"
    )
    parser.add_argument("--device", default="host-cpu", help="device profile of the latency figures")
    add_out_option(
        parser,
        "results folder; files go to DIR/<study>/replay/ (default: results/ of the checkout, "
        "else of the current directory, or $NNSEARCH_RESULTS)",
        old=("--results",),
    )
    add_db_option(parser)
    parser.set_defaults(handler=cmd_replay)
