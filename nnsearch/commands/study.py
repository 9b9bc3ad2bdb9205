"""`nnsearch demo` and `nnsearch search`."""

from __future__ import annotations

import argparse
import dataclasses

from nnsearch.commands import (
    DATA_HELP,
    MAX_SIDE_HELP,
    PRECISION_HELP,
    TEACHER_HELP,
    add_db_option,
    add_sampler_option,
    add_setting,
    add_switch,
    add_teacher_option,
    given_settings,
    max_side,
    parse_crops,
    parse_resolution,
)
from nnsearch.errors import NNSearchError


def cmd_demo(args: argparse.Namespace) -> int:
    from nnsearch.commands.demo import run_demo

    summary = run_demo(db=args.db, trials=args.trials, name=args.study, teacher=args.teacher)
    print(summary.line("demo"))
    return 0


def search_config(args: argparse.Namespace, stored=None):  # -> (StudyConfig, HeartbeatConfig)
    """The study and heartbeat configs of `nnsearch search`.

    Options not given keep the stored study's values (`stored`, a StudyConfig)
    or, for a new study, the library's defaults (`nnsearch.search.config`).
    """
    from nnsearch.model.space import load_space
    from nnsearch.search.config import HeartbeatConfig, StudyConfig

    settings = given_settings(args)
    if "resolution" in settings:
        settings["height"], settings["width"] = parse_resolution(settings.pop("resolution"))
    if "crops" in settings:
        settings["crops"] = parse_crops(settings["crops"])
    if "rungs" in settings:
        settings["rungs"] = parse_rungs(settings["rungs"])
    if "reduction_factor" in settings and "rungs" not in settings and (stored is None or stored.rungs is None):
        raise NNSearchError("--reduction-factor needs --rungs (e.g. --rungs 300,1200,4800 --reduction-factor 3)")
    if stored is None:
        config = StudyConfig(name=args.study, space=load_space(args.space or "litedenoise"))
    else:
        config = stored if args.space is None else dataclasses.replace(stored, space=load_space(args.space))
    heartbeat = {
        key: getattr(args, attr)
        for key, attr in (("interval_s", "heartbeat_interval"), ("grace_s", "grace_period"))
        if getattr(args, attr) is not None
    }
    return config.replace(**settings), HeartbeatConfig(**heartbeat)


def parse_rungs(text: str) -> tuple[int, ...]:
    """'300,1200,4800' -> (300, 1200, 4800), with a clear error otherwise."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise NNSearchError(
            f"--rungs must be comma-separated step counts such as 300,1200,4800, got {text!r}"
        ) from None


def cmd_search(args: argparse.Namespace) -> int:
    from nnsearch.commands.summary import format_table, summarize
    from nnsearch.common.paths import safe_component
    from nnsearch.search.api import stored_config
    from nnsearch.search.study import Study
    from nnsearch.search.workers import run_workers
    from nnsearch.store.engine import Store
    from nnsearch.train.datasets import load_data

    if args.trials < 1:
        raise NNSearchError(f"--trials must be >= 1, got {args.trials}")
    safe_component(args.study, "study name")  # before the store is opened to look the study up
    if args.space is not None:
        from nnsearch.model.space import load_space

        load_space(args.space)  # a bad space file is refused before the store is opened (or created)
    store = Store(args.db)
    config, heartbeat = search_config(args, stored_config(args.study, store))
    print(f"store: {store.display_url}")
    if args.workers > 1:
        if args.change:  # record the change once, before the workers resume the study with it
            Study(config, store, heartbeat=heartbeat, verbose=False, allow_changes=args.change)
        run_workers(config, store, args.trials, args.workers, heartbeat=heartbeat, timeout_s=args.timeout)
        study = Study(config, store, heartbeat=heartbeat, verbose=False)
    else:
        data = load_data(config.data.spec, max_side=config.data.max_side, seed=config.seed)  # bad paths fail here
        study = Study(config, store, heartbeat=heartbeat, data=data, allow_changes=args.change)
        study.run(args.trials, timeout_s=args.timeout)
    summary = summarize(study)
    print(format_table(summary.front))
    print(summary.line("search"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from nnsearch.search.config import HeartbeatConfig  # light: no torch, pandas or Optuna

    demo = sub.add_parser("demo", help="run (or resume) a small real study on the tiny space and built-in data")
    demo.add_argument(
        "--trials",
        type=int,
        default=6,
        help="finished trials the study should have, as for search (default 6; re-running resumes)",
    )
    demo.add_argument("--study", default="demo", help="study name (default demo)")
    add_teacher_option(demo)
    add_db_option(demo)
    demo.set_defaults(handler=cmd_demo)

    search = sub.add_parser(
        "search",
        help="run (or resume) a search study",
        description="Run a search study, or resume it: options not given keep the stored study's values; an option "
        "that differs from them is an error unless named with --change (docs/configuration.md).",
    )
    search.add_argument("--study", default="search", help="study name (default %(default)s)")
    search.add_argument(
        "--space",
        default=None,
        help="search-space YAML file or name in search_spaces/ (default: the stored study's, "
        "litedenoise for a new one)",
    )
    search.add_argument(
        "--trials",
        type=int,
        default=20,
        help="finished trials the study should have (re-running the same command resumes; "
        "workers that join the study share this count)",
    )
    search.add_argument(
        "--change",
        action="append",
        default=[],
        metavar="SETTING",
        help="resume with a new value of SETTING (e.g. --change steps --steps 400); the change is "
        "recorded with the study (repeatable)",
    )
    search.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    search.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="start no new trial after S seconds (the running ones finish)",
    )
    beat = HeartbeatConfig()
    search.add_argument(
        "--heartbeat-interval",
        type=int,
        default=None,
        metavar="S",
        help=f"seconds between a running trial's heartbeats (default {beat.interval_s})",
    )
    search.add_argument(
        "--grace-period",
        type=int,
        default=None,
        metavar="S",
        help=f"a trial without heartbeat for S seconds is failed and retried (default {beat.grace_s})",
    )
    add_db_option(search)
    add_study_settings(search)
    search.set_defaults(handler=cmd_search)


def add_study_settings(parser: argparse.ArgumentParser) -> None:
    """The options that set a study's configuration (`nnsearch.search.config`), one per setting."""
    from nnsearch.commands import SETTING_DEST, NotGiven
    from nnsearch.search.config import SETTINGS

    data = parser.add_argument_group("data and teacher")
    add_setting(data, "--data", "data", DATA_HELP, metavar="SPEC", shown=lambda v: v or "built-in data")
    add_setting(data, "--max-side", "max_side", MAX_SIDE_HELP, type=max_side, metavar="PX")
    add_setting(data, "--seed", "seed", "seed of the data split, sampler, distillation and calibration", type=int)
    add_setting(data, "--teacher", "teacher", TEACHER_HELP, metavar="PRESET|PATH")
    add_setting(
        data,
        "--teacher-steps",
        "teacher_steps",
        "teacher training steps",
        type=int,
        shown=lambda v: "the preset's" if v is None else v,
    )
    add_setting(
        data,
        "--teacher-margin",
        "teacher_margin_db",
        "refuse a teacher less than DB better than the noisy input on validation",
        type=float,
        metavar="DB",
    )

    distill = parser.add_argument_group("distillation of each candidate")
    add_setting(distill, "--steps", "steps", "distillation steps per candidate", type=int)
    distill.add_argument(
        "--rungs",
        dest=f"{SETTING_DEST}rungs",
        default=NotGiven("single-fidelity"),
        metavar="STEPS,STEPS,...",
        help="multi-fidelity search: cumulative distillation steps per rung, e.g. 300,1200,4800; "
        "every candidate trains the first rung, the most promising are continued from their "
        "weights (default %(default)s: every candidate trains --steps; setting rungs)",
    )
    distill.add_argument(
        "--reduction-factor",
        dest=f"{SETTING_DEST}reduction_factor",
        type=int,
        metavar="ETA",
        default=NotGiven(3),
        help="with --rungs: the top 1/ETA of each rung are continued "
        "(default %(default)s; setting rungs.reduction_factor)",
    )
    add_setting(distill, "--epochs", "epochs", "evaluations per candidate", type=int)
    add_setting(distill, "--batch", "batch", "distillation batch size", type=int)
    add_setting(
        distill,
        "--crops",
        "crops",
        "progressive crop sizes, e.g. 64,128,256",
        shown=lambda crops: ",".join(map(str, crops)),
    )
    add_setting(distill, "--lr", "lr", "Adam learning rate, cosine decay", type=float)
    add_setting(distill, "--alpha", "alpha", "weight of the teacher term in the loss", type=float)
    add_setting(distill, "--loss", "loss", "loss: l1 or charbonnier", choices=["l1", "charbonnier"])
    add_setting(
        distill,
        "--loader-workers",
        "loader_workers",
        "background processes cutting batches (0: inline)",
        type=int,
        shown=lambda v: "one per 4 cores, 1 to 4" if v is None else v,
    )
    add_switch(distill, "--no-amp", "amp", False, "train in float32 on CUDA (default: bf16/fp16 AMP)")

    latency = parser.add_argument_group("latency target")
    add_setting(latency, "--device", "device", "device profile name for latency")
    lat = {key: SETTINGS[key].default for key in ("height", "width")}
    latency.add_argument(
        "--resolution",
        dest=f"{SETTING_DEST}resolution",
        default=NotGiven(f"{lat['height']}x{lat['width']}"),
        metavar="HxW",
        help="latency input HEIGHTxWIDTH (default %(default)s)",
    )
    add_setting(latency, "--threads", "threads", "threads for latency", type=int)
    add_setting(latency, "--runs", "runs", "timed runs of each whole-model measurement", type=int)
    add_switch(
        latency,
        "--no-measure",
        "measure",
        False,
        "use lookup-table predictions only (no whole-model timing per candidate)",
    )
    add_setting(
        latency,
        "--latency-wait",
        "latency_wait",
        "a device served by measurement agents: wait for the "
        "agent's whole-model timing before a trial completes (--no-latency-wait: go on with the lookup-table "
        "prediction; the measured figure replaces it when it lands)",
        action=argparse.BooleanOptionalAction,
        metavar=None,
    )
    add_setting(
        latency,
        "--precision",
        "precision",
        "latency objective from this precision's lookup table, "
        f"quality objective = PSNR of the quantized student: {PRECISION_HELP}",
        metavar="P",
    )
    add_setting(
        latency,
        "--calibration-samples",
        "calibration_samples",
        "seeded 64 px training crops that calibrate int8 / w8a16",
        type=int,
        metavar="N",
    )

    budget = parser.add_argument_group("budget and sampler")
    add_setting(
        budget,
        "--max-latency-ms",
        "max_latency_ms",
        "latency budget: candidates predicted slower are recorded infeasible and not trained",
        type=float,
        metavar="MS",
        shown=lambda v: "none" if v is None else v,
    )
    add_setting(
        budget,
        "--early-stop-margin",
        "early_stop",
        "stop a candidate whose PSNR after an epoch is DB below a no-slower finished trial's at the same epoch",
        type=float,
        metavar="DB",
        shown=lambda rule: rule.margin_db,
    )
    add_switch(budget, "--no-early-stop", "early_stop", None, "train every feasible candidate for its full budget")
    add_sampler_option(
        budget, "the sampler proposing candidates (guided: model-based, knows each candidate's predicted latency)"
    )
    add_switch(
        budget,
        "--minimize-params",
        "minimize_params",
        True,
        "parameter count as a third objective (besides PSNR and latency)",
    )
    add_switch(
        budget,
        "--start-from-references",
        "start_from_references",
        True,
        "a new study trains the space's reference students (e.g. LiteDenoiseNet) first, so the search "
        "starts from the hand design",
    )
