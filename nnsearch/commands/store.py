"""`nnsearch query`: read the store."""

from __future__ import annotations

import argparse

from nnsearch.commands import add_db_option


def cmd_query(args: argparse.Namespace) -> int:
    from nnsearch.store.engine import Store
    from nnsearch.store.query import study_results

    frame = study_results(Store(args.db, create=False), args.study)
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=1))
    else:
        print(frame.to_string(index=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    query = sub.add_parser("query", help="print a study's recorded trials")
    query.add_argument("--study", required=True)
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_db_option(query)
    query.set_defaults(handler=cmd_query)
