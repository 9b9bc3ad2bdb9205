"""The `nnsearch` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from nnsearch.errors import NNSearchError

Handler = Callable[[argparse.Namespace], int]


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None,
                        help="database URL or SQLite file (default: $NNSEARCH_DB, else db/nnsearch.db)")


def cmd_demo(args: argparse.Namespace) -> int:
    from nnsearch.demo import run_demo

    summary = run_demo(db=args.db, trials=args.trials, name=args.study)
    print(summary.line("demo"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nnsearch.demo import format_table, summarize
    from nnsearch.distill import DistillConfig
    from nnsearch.space import load_space
    from nnsearch.store.engine import Store
    from nnsearch.study import LatencyConfig, Study, StudyConfig

    height, width = _resolution(args.resolution)
    config = StudyConfig(
        name=args.study, space=load_space(args.space), data_spec=args.data, seed=args.seed,
        sampler=args.sampler, teacher=args.teacher,
        distill=DistillConfig(steps=args.steps, epochs=args.epochs, alpha=args.alpha, seed=args.seed),
        latency=LatencyConfig(device=args.device, height=height, width=width, threads=args.threads),
    )
    store = Store(args.db)
    print(f"store: {store.display_url}")
    study = Study(config, store)
    study.run(args.trials)
    summary = summarize(study)
    print(format_table(summary.front))
    print(summary.line("search"))
    return 0


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


def _resolution(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NNSearchError(f"--resolution must look like HEIGHTxWIDTH (e.g. 1088x1920), got {text!r}") from None
    if height <= 0 or width <= 0:
        raise NNSearchError(f"--resolution must be positive, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnsearch", description="Hardware-aware search for NPU-friendly denoisers.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run (or resume) a small real study on the tiny space and built-in data")
    demo.add_argument("--trials", type=int, default=6)
    demo.add_argument("--study", default="demo")
    _add_db(demo)
    demo.set_defaults(handler=cmd_demo)

    search = sub.add_parser("search", help="run (or resume) a search study")
    search.add_argument("--space", default="litedenoise", help="search-space YAML file or name in search_spaces/")
    search.add_argument("--data", default=None, help="dataset path, 'clean:PATH', or omitted for the built-in data")
    search.add_argument("--trials", type=int, default=20)
    search.add_argument("--study", default="search")
    search.add_argument("--sampler", choices=["tpe", "nsga2", "random"], default="tpe")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--steps", type=int, default=240, help="distillation steps per candidate")
    search.add_argument("--epochs", type=int, default=2, help="evaluations per candidate")
    search.add_argument("--alpha", type=float, default=0.9, help="weight of the teacher term in the loss")
    search.add_argument("--teacher", default="cpu", help="teacher preset (cpu or paper)")
    search.add_argument("--device", default="host-cpu", help="device profile name for latency")
    search.add_argument("--resolution", default="1088x1920", help="latency input HEIGHTxWIDTH")
    search.add_argument("--threads", type=int, default=1)
    _add_db(search)
    search.set_defaults(handler=cmd_search)

    query = sub.add_parser("query", help="print a study's recorded trials")
    query.add_argument("--study", required=True)
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _add_db(query)
    query.set_defaults(handler=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one paragraph and exit 2; Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NNSearchError as exc:
        print(f"nnsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nnnsearch: interrupted; finished trials are saved, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
