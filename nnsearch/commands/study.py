"""`nnsearch demo` and `nnsearch search`."""

from __future__ import annotations

import argparse

from nnsearch.commands import add_db_option, parse_resolution


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

    height, width = parse_resolution(args.resolution)
    config = StudyConfig(
        name=args.study, space=load_space(args.space), data_spec=args.data, seed=args.seed,
        sampler=args.sampler, teacher=args.teacher, max_latency_ms=args.max_latency_ms,
        distill=DistillConfig(steps=args.steps, epochs=args.epochs, alpha=args.alpha, seed=args.seed),
        latency=LatencyConfig(device=args.device, height=height, width=width, threads=args.threads,
                              measure=not args.no_measure),
    )
    store = Store(args.db)
    print(f"store: {store.display_url}")
    study = Study(config, store)
    study.run(args.trials)
    summary = summarize(study)
    print(format_table(summary.front))
    print(summary.line("search"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run (or resume) a small real study on the tiny space and built-in data")
    demo.add_argument("--trials", type=int, default=6, help="trials to add (default 6)")
    demo.add_argument("--study", default="demo", help="study name (default demo)")
    add_db_option(demo)
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
    search.add_argument("--max-latency-ms", type=float, default=None,
                        help="latency budget: candidates predicted slower are recorded infeasible and not trained")
    search.add_argument("--no-measure", action="store_true",
                        help="use lookup-table predictions only (no whole-model timing per candidate)")
    add_db_option(search)
    search.set_defaults(handler=cmd_search)
