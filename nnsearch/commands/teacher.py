"""`nnsearch teacher train|check|show`: train (or reuse, or resume) a cached teacher, check a teacher
(a preset or a file) against the noisy input, list cached teachers."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnsearch.commands import add_data_options, add_teacher_option
from nnsearch.errors import NNSearchError
from nnsearch.train.config import MIN_GAIN_DB


def _load(args: argparse.Namespace):  # -> DenoiseData
    from nnsearch.train.datasets import load_data

    return load_data(args.data, seed=args.seed, max_side=args.max_side)


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from nnsearch.common.device import default_device
    from nnsearch.train.teacher import (
        load_or_train_teacher,
        partial_path,
        teacher_config,
        teacher_path,
    )
    from nnsearch.train.teacher_check import MIN_GAIN_DB, PreparedTeacher, measure_teacher
    from nnsearch.train.teacher_outputs import teacher_fingerprint

    config = teacher_config(args.preset, args.steps)
    data = _load(args)
    print(f"data: {data.source}: {len(data.train)} train / {len(data.val)} validation images")
    path = teacher_path(config, data)
    if path.exists():
        state = "reused"
    elif partial_path(path).exists():
        state = "resumed"
    else:
        state = "trained"
    began = time.perf_counter()
    device = default_device()
    teacher = load_or_train_teacher(config, data, device=device, verbose=True)
    seconds = time.perf_counter() - began
    quality = measure_teacher(
        PreparedTeacher(teacher, f"preset '{config.preset}'", teacher_fingerprint(teacher)), data, device=device
    )
    params = sum(p.numel() for p in teacher.parameters())
    print(
        f"teacher train: preset '{config.preset}', {config.steps} steps, {params:,} parameters, {state} "
        f"in {seconds:.0f} s; validation PSNR {quality.psnr:.2f} dB (noisy input {quality.noisy_psnr:.2f} dB); "
        f"checkpoint {path}"
    )
    if quality.gain_db < MIN_GAIN_DB:
        print(
            f"teacher train: warning: less than {MIN_GAIN_DB} dB better than the noisy input; a study would "
            f"refuse this teacher (train longer with --steps)"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate a teacher (preset or file) on the validation pairs; exit 2 when it is too weak."""
    from nnsearch.common.device import default_device
    from nnsearch.train.teacher_check import prepare_teacher

    data = _load(args)
    print(f"data: {data.source}: {len(data.train)} train / {len(data.val)} validation images")
    prepare_teacher(args.teacher, data, steps=args.steps, device=default_device(), margin_db=args.margin)
    print(f"teacher check: passed (at least +{args.margin:.1f} dB over the noisy input)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from nnsearch.common.paths import cache_dir
    from nnsearch.train.teacher import read_checkpoint_info, teachers_dir
    from nnsearch.train.teacher_outputs import outputs_dir

    fingerprint = _load(args).fingerprint if args.data is not None else None
    files = sorted([*teachers_dir().glob("*.pt"), *teachers_dir().glob("*.partial")]) if teachers_dir().exists() else []
    shown = 0
    print(f"cache: {cache_dir()}")
    for path in files:
        try:
            info = read_checkpoint_info(path)
        except NNSearchError as exc:
            print(f"  unreadable: {exc}")
            continue
        data = info.get("data", {})
        if fingerprint is not None and data.get("fingerprint") != fingerprint:
            continue
        shown += 1
        print("  " + _describe(info, path))
    if not shown:
        print(
            "  no cached teachers"
            + (" for this data" if fingerprint else "")
            + "; `nnsearch teacher train --data SPEC` trains one"
        )
    outputs = sorted(outputs_dir().glob("*.bin")) if outputs_dir().exists() else []
    total = sum(p.stat().st_size for p in outputs)
    print(f"teacher outputs: {len(outputs)} cached plan(s), {total / 2**20:.1f} MiB in {outputs_dir()}")
    return 0


def _describe(info: dict, path: Path) -> str:
    size = f"{path.stat().st_size / 2**20:.1f} MiB"
    if info["partial"]:
        return f"{info['preset']}: unfinished, stopped at step {info['step']} ({size}) {path}"
    data = info.get("data", {})
    where = f"on {data['name']}" if data.get("name") else "on unrecorded data"
    steps = f"{info['steps']} steps" if "steps" in info else "unrecorded budget"
    return f"{info['preset']}: {steps} {where}, {info['params']:,} parameters ({size}) {path}"


def _data_args(parser: argparse.ArgumentParser, *, required_help: str) -> None:
    add_data_options(parser, data_help=required_help)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="data seed (synthetic noise and split), as `nnsearch search --seed` (default 0)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    teacher = sub.add_parser("teacher", help="train, reuse or resume the cached teacher of a dataset; list teachers")
    teacher_sub = teacher.add_subparsers(dest="teacher_command", required=True, metavar="ACTION")

    train = teacher_sub.add_parser("train", help="train the teacher for a dataset (reuses or resumes a cached one)")
    _data_args(train, required_help="dataset path, 'clean:PATH', or omitted for the built-in data")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's budget)")
    train.add_argument("--preset", default="cpu", help="teacher preset: cpu (default) or paper")
    train.set_defaults(handler=cmd_train)

    check = teacher_sub.add_parser(
        "check",
        help="validation PSNR of a teacher (preset or file) next to the noisy "
        "input's; exit 2 when it is not clearly better",
    )
    _data_args(check, required_help="dataset path, 'clean:PATH', or omitted for the built-in data")
    add_teacher_option(check)
    check.add_argument("--steps", type=int, default=None, help="training steps of a preset (default: the preset's)")
    check.add_argument(
        "--margin",
        type=float,
        default=MIN_GAIN_DB,
        metavar="DB",
        help="the teacher must beat the noisy input by DB (default %(default)s)",
    )
    check.set_defaults(handler=cmd_check)

    show = teacher_sub.add_parser("show", help="list cached teachers (only those of --data when given)")
    _data_args(show, required_help="only teachers trained on this dataset spec")
    show.set_defaults(handler=cmd_show)
