"""`nnsearch demo` and `nnsearch search`."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from nnsearch.commands import (
    max_side,
    add_db_option,
    add_precision_option,
    add_teacher_option,
    parse_precision,
    parse_resolution,
)
from nnsearch.errors import NNSearchError

#: The names of `nnsearch.search.samplers.SAMPLERS` (listed here so that `--help` does not import Optuna).
SAMPLER_NAMES = ["guided", "tpe", "nsga2", "random"]


class LibraryDefault:
    """An option whose default is the library's: fields of a config dataclass, not a copy of their values.

    `--help` shows the value (importing the dataclass only then); when the option
    is not given, the config is built without it and keeps the dataclass default.
    """

    def __init__(self, module: str, dataclass_name: str, *fields: str, fmt: Callable[[Any], str] = str) -> None:
        self.module, self.dataclass_name, self.fields, self.fmt = module, dataclass_name, fields, fmt

    def value(self) -> Any:
        """The dataclass's default of the field (a tuple of them for several fields)."""
        import dataclasses
        import importlib

        known = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(self.module),
                                                                 self.dataclass_name))}
        values = tuple(known[name].default if known[name].default is not dataclasses.MISSING
                       else known[name].default_factory() for name in self.fields)
        return values[0] if len(values) == 1 else values

    def __str__(self) -> str:
        return self.fmt(self.value())


def _distill_default(field: str, fmt=str) -> LibraryDefault:
    return LibraryDefault("nnsearch.train.distill", "DistillConfig", field, fmt=fmt)


def _given(args: argparse.Namespace, **options: str) -> dict:
    """{keyword: value} of the options (keyword=attribute of args) given on the command line."""
    return {key: getattr(args, attr) for key, attr in options.items()
            if not isinstance(getattr(args, attr), LibraryDefault)}


def cmd_demo(args: argparse.Namespace) -> int:
    from nnsearch.commands.demo import run_demo

    summary = run_demo(db=args.db, trials=args.trials, name=args.study, teacher=args.teacher)
    print(summary.line("demo"))
    return 0


def search_config(args: argparse.Namespace):  # -> (StudyConfig, HeartbeatConfig)
    """The study and heartbeat configs of `nnsearch search`; options not given keep the library's defaults."""
    from nnsearch.model.space import load_space
    from nnsearch.search.config import HeartbeatConfig, LatencyConfig, StudyConfig
    from nnsearch.search.early_stopping import EarlyStopRule
    from nnsearch.train.distill import DistillConfig

    latency = _given(args, device="device", threads="threads", wait="latency_wait")
    if not isinstance(args.resolution, LibraryDefault):
        latency["height"], latency["width"] = parse_resolution(args.resolution)
    distill = _given(args, steps="steps", epochs="epochs", alpha="alpha", batch="batch", seed="seed")  # seeds both
    if not isinstance(args.crops, LibraryDefault):
        distill["crops"] = parse_crops(args.crops)
    if args.loader_workers is not None:
        distill["loader_workers"] = args.loader_workers
    if args.no_amp:
        distill["amp"] = False
    rungs = parse_rungs(args.rungs, args.reduction_factor)
    if rungs is not None:
        distill.setdefault("steps", rungs.steps[0])
    margin = args.early_stop_margin
    early_stop = {} if isinstance(margin, LibraryDefault) else {
        "early_stop": None if margin is None else EarlyStopRule(margin_db=margin)}
    config = StudyConfig(
        name=args.study, space=load_space(args.space), data_spec=args.data, sampler=args.sampler,
        teacher_steps=args.teacher_steps, max_side=args.max_side, max_latency_ms=args.max_latency_ms,
        distill=DistillConfig(**distill), latency=LatencyConfig(measure=not args.no_measure, **latency),
        minimize_params=args.minimize_params, start_from_references=args.start_from_references, **early_stop, **_given(args, teacher="teacher", seed="seed", teacher_margin_db="teacher_margin"),
        precision=parse_precision(args.precision), **_given(args, calibration_samples="calibration_samples"),
        rungs=rungs,
    )
    return config, HeartbeatConfig(**_given(args, interval_s="heartbeat_interval", grace_s="grace_period"))


def cmd_search(args: argparse.Namespace) -> int:
    from nnsearch.commands.summary import format_table, summarize
    from nnsearch.search.study import Study
    from nnsearch.search.workers import run_workers
    from nnsearch.store.engine import Store
    from nnsearch.train.datasets import load_data

    if args.trials < 1:
        raise NNSearchError(f"--trials must be >= 1, got {args.trials}")
    config, heartbeat = search_config(args)
    store = Store(args.db)
    print(f"store: {store.display_url}")
    if args.workers > 1:
        run_workers(config, store, args.trials, args.workers, heartbeat=heartbeat, timeout_s=args.timeout)
        study = Study(config, store, heartbeat=heartbeat, verbose=False)
    else:
        data = load_data(config.data_spec, max_side=config.max_side, seed=config.seed)  # bad paths fail here
        study = Study(config, store, heartbeat=heartbeat, data=data)
        study.run(args.trials, timeout_s=args.timeout)
    summary = summarize(study)
    print(format_table(summary.front))
    print(summary.line("search"))
    return 0


def parse_rungs(text: str | None, reduction_factor: int | LibraryDefault):  # -> RungSchedule | None
    """'300,1200,4800' and a reduction factor -> a `RungSchedule` (None without --rungs), with clear errors."""
    if text is None:
        if not isinstance(reduction_factor, LibraryDefault):
            raise NNSearchError("--reduction-factor needs --rungs (e.g. --rungs 300,1200,4800 --reduction-factor 3)")
        return None
    from nnsearch.search.multifidelity import RungSchedule

    try:
        steps = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise NNSearchError(f"--rungs must be comma-separated step counts such as 300,1200,4800, got {text!r}") from None
    return RungSchedule(steps) if isinstance(reduction_factor, LibraryDefault) else RungSchedule(steps, reduction_factor)


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
    demo.add_argument("--trials", type=int, default=6,
                      help="finished trials the study should have, as for search (default 6; re-running resumes)")
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
    search.add_argument("--start-from-references", action="store_true",
                        help="a new study trains the space's reference students (e.g. LiteDenoiseNet) first, "
                             "so the search starts from the hand design")
    search.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    search.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="start no new trial after S seconds (the running ones finish)")
    search.add_argument("--early-stop-margin", type=float, default=LibraryDefault("nnsearch.search.early_stopping", "EarlyStopRule", "margin_db"), metavar="DB",
                        help="stop a candidate whose PSNR after an epoch is DB below a no-slower finished "
                             "trial's at the same epoch (default %(default)s)")
    search.add_argument("--no-early-stop", dest="early_stop_margin", action="store_const", const=None,
                        help="train every feasible candidate for its full budget")
    search.add_argument("--heartbeat-interval", type=int, default=LibraryDefault("nnsearch.search.config", "HeartbeatConfig", "interval_s"), metavar="S",
                        help="seconds between a running trial's heartbeats (default %(default)s)")
    search.add_argument("--grace-period", type=int, default=LibraryDefault("nnsearch.search.config", "HeartbeatConfig", "grace_s"), metavar="S",
                        help="a trial without heartbeat for S seconds is failed and retried (default %(default)s)")
    search.add_argument("--study", default="search")
    search.add_argument("--sampler", choices=SAMPLER_NAMES, default="guided",
                        help="guided (default: model-based, knows each candidate's predicted latency), tpe, nsga2 "
                             "or random")
    search.add_argument("--seed", type=int, default=LibraryDefault("nnsearch.search.config", "StudyConfig", "seed"),
                        help="seed of the sampler and the distillation (default %(default)s)")
    search.add_argument("--steps", type=int, default=_distill_default("steps"),
                        help="distillation steps per candidate (default %(default)s)")
    search.add_argument("--rungs", default=None, metavar="STEPS,STEPS,...",
                        help="multi-fidelity search: cumulative distillation steps per rung, e.g. 300,1200,4800; "
                             "every candidate trains the first rung, the most promising are continued from their "
                             "weights (default: single-fidelity, every candidate trains --steps)")
    search.add_argument("--reduction-factor", type=int, metavar="ETA",
                        default=LibraryDefault("nnsearch.search.multifidelity", "RungSchedule", "reduction_factor"),
                        help="with --rungs: the top 1/ETA of each rung are continued (default %(default)s)")
    search.add_argument("--epochs", type=int, default=_distill_default("epochs"),
                        help="evaluations per candidate (default %(default)s)")
    search.add_argument("--alpha", type=float, default=_distill_default("alpha"),
                        help="weight of the teacher term in the loss (default %(default)s)")
    search.add_argument("--batch", type=int, default=_distill_default("batch"),
                        help="distillation batch size (default %(default)s)")
    search.add_argument("--crops", default=_distill_default("crops", lambda crops: ",".join(map(str, crops))),
                        help="progressive crop sizes, e.g. 64,128,256 (default %(default)s)")
    add_teacher_option(search, default=LibraryDefault("nnsearch.search.config", "StudyConfig", "teacher"))
    search.add_argument("--loader-workers", type=int, default=None,
                        help="background processes cutting batches (default: one per 4 cores, 1 to 4; 0: inline)")
    search.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (default: bf16/fp16 AMP)")
    search.add_argument("--teacher-steps", type=int, default=None, help="teacher training steps (default: preset's)")
    search.add_argument("--teacher-margin", type=float, metavar="DB",
                        default=LibraryDefault("nnsearch.search.config", "StudyConfig", "teacher_margin_db"),
                        help="refuse a teacher less than DB better than the noisy input on validation "
                             "(default %(default)s)")
    search.add_argument("--max-side", type=max_side, default=None, metavar="PX",
                        help="downscale training/validation images to at most PX on the long side")
    search.add_argument("--device", default=LibraryDefault("nnsearch.search.config", "LatencyConfig", "device"),
                        help="device profile name for latency (default %(default)s)")
    search.add_argument("--resolution", default=LibraryDefault("nnsearch.search.config", "LatencyConfig", "height", "width",
                                                        fmt=lambda hw: f"{hw[0]}x{hw[1]}"),
                        help="latency input HEIGHTxWIDTH (default %(default)s)")
    search.add_argument("--threads", type=int, default=LibraryDefault("nnsearch.search.config", "LatencyConfig", "threads"),
                        help="threads for latency (default %(default)s)")
    search.add_argument("--max-latency-ms", type=float, default=None,
                        help="latency budget: candidates predicted slower are recorded infeasible and not trained")
    search.add_argument("--latency-wait", action=argparse.BooleanOptionalAction,
                        default=LibraryDefault("nnsearch.search.config", "LatencyConfig", "wait"),
                        help="a device served by measurement agents: wait for the agent's whole-model timing "
                             "before a trial completes (--no-latency-wait: go on with the lookup-table prediction; "
                             "the measured figure replaces it when it lands) (default %(default)s)")
    search.add_argument("--no-measure", action="store_true",
                        help="use lookup-table predictions only (no whole-model timing per candidate)")
    add_precision_option(search, "latency objective from this precision's lookup table, quality objective = PSNR "
                                 "of the quantized student")
    search.add_argument("--calibration-samples", type=int, metavar="N",
                        default=LibraryDefault("nnsearch.search.config", "StudyConfig", "calibration_samples"),
                        help="seeded 64 px training crops that calibrate int8 / w8a16 (default %(default)s)")
    add_db_option(search)
    search.set_defaults(handler=cmd_search)
