"""`nnsearch demo` and `nnsearch search`."""

from __future__ import annotations

import argparse

from nnsearch.commands import add_db_option, add_teacher_option, parse_resolution
from nnsearch.errors import NNSearchError

#: The names of `nnsearch.search.samplers.SAMPLERS` (listed here so that `--help` does not import Optuna).
SAMPLER_NAMES = ["guided", "tpe", "nsga2", "random"]


def cmd_demo(args: argparse.Namespace) -> int:
    from nnsearch.search.demo import run_demo

    summary = run_demo(db=args.db, trials=args.trials, name=args.study, teacher=args.teacher)
    print(summary.line("demo"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nnsearch.model.space import load_space
    from nnsearch.search.demo import format_table, summarize
    from nnsearch.search.early_stopping import EarlyStopRule
    from nnsearch.search.study import HeartbeatConfig, LatencyConfig, Study, StudyConfig
    from nnsearch.search.workers import run_workers
    from nnsearch.store.engine import Store
    from nnsearch.train.datasets import load_data
    from nnsearch.train.distill import DistillConfig
    from nnsearch.train.teacher_check import MIN_GAIN_DB

    height, width = parse_resolution(args.resolution)
    if args.trials < 1:
        raise NNSearchError(f"--trials must be >= 1, got {args.trials}")
    config = StudyConfig(
        name=args.study, space=load_space(args.space), data_spec=args.data, seed=args.seed,
        sampler=args.sampler, teacher=args.teacher, teacher_steps=args.teacher_steps, max_side=args.max_side,
        teacher_margin_db=MIN_GAIN_DB if args.teacher_margin is None else args.teacher_margin,
        max_latency_ms=args.max_latency_ms,
        distill=DistillConfig(steps=args.steps, epochs=args.epochs, alpha=args.alpha, seed=args.seed,
                              batch=args.batch, crops=parse_crops(args.crops)),
        latency=LatencyConfig(device=args.device, height=height, width=width, threads=args.threads,
                              measure=not args.no_measure),
        early_stop=None if args.early_stop_margin is None else EarlyStopRule(margin_db=args.early_stop_margin),
        minimize_params=args.minimize_params,
    )
    heartbeat = HeartbeatConfig(interval_s=args.heartbeat_interval, grace_s=args.grace_period)
    store = Store(args.db)
    print(f"store: {store.display_url}")
    if args.workers > 1:
        run_workers(config, store, args.trials, args.workers, heartbeat=heartbeat, timeout_s=args.timeout)
        study = Study(config, store, heartbeat=heartbeat, verbose=False)
    else:
        data = load_data(config.data_spec, max_side=config.max_side, seed=config.seed)  # bad paths fail here
        study = Study(config, store, heartbeat=heartbeat, data=data)
        study.run_until(args.trials, timeout_s=args.timeout)
    summary = summarize(study)
    print(format_table(summary.front))
    print(summary.line("search"))
    return 0


def parse_crops(text: str) -> tuple[int, ...]:
    """'48,64' -> (48, 64), with a clear error otherwise."""
    try:
        crops = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise NNSearchError(f"--crops must be comma-separated integers such as 64,128,256, got {text!r}") from None
    if not crops or min(crops) < 8 or max(crops) > 1024:
        raise NNSearchError(f"--crops sizes must be between 8 and 1024 px, got {text!r}")
    return crops


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run (or resume) a small real study on the tiny space and built-in data")
    demo.add_argument("--trials", type=int, default=6, help="trials to add (default 6)")
    demo.add_argument("--study", default="demo", help="study name (default demo)")
    add_teacher_option(demo)
    add_db_option(demo)
    demo.set_defaults(handler=cmd_demo)

    search = sub.add_parser("search", help="run (or resume) a search study")
    search.add_argument("--space", default="litedenoise", help="search-space YAML file or name in search_spaces/")
    search.add_argument("--data", default=None, help="dataset path, 'clean:PATH', or omitted for the built-in data")
    search.add_argument("--trials", type=int, default=20,
                        help="finished trials the study should have (re-running the same command resumes; "
                             "workers that join the study share this count)")
    search.add_argument("--minimize-params", action="store_true",
                        help="parameter count as a third objective (besides PSNR and latency)")
    search.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    search.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="start no new trial after S seconds (the running ones finish)")
    search.add_argument("--early-stop-margin", type=float, default=1.0, metavar="DB",
                        help="stop a candidate whose PSNR after an epoch is DB below a no-slower finished "
                             "trial's at the same epoch (default 1.0)")
    search.add_argument("--no-early-stop", dest="early_stop_margin", action="store_const", const=None,
                        help="train every feasible candidate for its full budget")
    search.add_argument("--heartbeat-interval", type=int, default=30, metavar="S",
                        help="seconds between a running trial's heartbeats (default 30)")
    search.add_argument("--grace-period", type=int, default=120, metavar="S",
                        help="a trial without heartbeat for S seconds is failed and retried (default 120)")
    search.add_argument("--study", default="search")
    search.add_argument("--sampler", choices=SAMPLER_NAMES, default="guided",
                        help="guided (default: model-based, knows each candidate's predicted latency), tpe, nsga2 "
                             "or random")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--steps", type=int, default=240, help="distillation steps per candidate")
    search.add_argument("--epochs", type=int, default=2, help="evaluations per candidate")
    search.add_argument("--alpha", type=float, default=0.9, help="weight of the teacher term in the loss")
    search.add_argument("--batch", type=int, default=8, help="distillation batch size (default 8)")
    search.add_argument("--crops", default="48,64", help="progressive crop sizes, e.g. 64,128,256 (default 48,64)")
    add_teacher_option(search)
    search.add_argument("--teacher-steps", type=int, default=None, help="teacher training steps (default: preset's)")
    search.add_argument("--teacher-margin", type=float, default=None, metavar="DB",
                        help="refuse a teacher less than DB better than the noisy input on validation (default 1.0)")
    search.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="downscale training/validation images to at most PX on the long side")
    search.add_argument("--device", default="host-cpu", help="device profile name for latency")
    search.add_argument("--resolution", default="1088x1920", help="latency input HEIGHTxWIDTH")
    search.add_argument("--threads", type=int, default=1)
    search.add_argument("--max-latency-ms", type=float, default=None,
                        help="latency budget: candidates predicted slower are recorded infeasible and not trained")
    search.add_argument("--no-measure", action="store_true",
                        help="use lookup-table predictions only (no whole-model timing per candidate)")
    add_db_option(search)
    search.set_defaults(handler=cmd_search)
