"""`nnsearch train NN`: the long, final distillation of a recorded student (resumable)."""

from __future__ import annotations

import argparse

from nnsearch.commands import add_data_options, add_db_option, add_teacher_option, parse_crops


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from nnsearch.store.engine import Store
    from nnsearch.train.config import FINAL_DISTILL, DataConfig, TeacherConfig
    from nnsearch.train.final_training import FinalTraining, train_student, with_defaults

    base = replace(
        FINAL_DISTILL,
        batch=args.batch,
        lr=args.lr,
        alpha=args.alpha,
        loss=args.loss,
        seed=args.seed,
        amp=not args.no_amp,
        loader_workers=args.loader_workers,
    )
    request = FinalTraining(
        nn=args.nn,
        distill=with_defaults(base, args.steps, parse_crops(args.crops), args.epochs),
        data=DataConfig(args.data, args.max_side),
        teacher=TeacherConfig(args.teacher, args.teacher_steps),
        restart=args.restart,
        checkpoint_every=args.checkpoint_every,
        teacher_cache_bytes=None if args.teacher_cache_gb is None else int(args.teacher_cache_gb * 2**30),
    )
    store = Store(args.db, create=False)
    try:
        print(train_student(request, store).line())
    finally:
        store.dispose()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from nnsearch.train.config import FINAL_DISTILL, TeacherConfig  # light: no torch

    final, teacher = FINAL_DISTILL, TeacherConfig()
    train = sub.add_parser("train", help="train a recorded student for longer (progressive crops); resumable")
    train.add_argument("nn", help="model name, e.g. DenoiseUNet-3f2a9c1b7e")
    train.add_argument("--steps", type=int, default=final.steps, help="training steps (default %(default)s)")
    train.add_argument(
        "--crops",
        default=",".join(map(str, final.crops)),
        help="crop sizes in equal shares of the steps (default: the paper's %(default)s; sizes "
        "larger than the smallest training image are cut to fit it)",
    )
    train.add_argument("--epochs", type=int, default=None, help="validations (default: one per crop size)")
    add_data_options(train)
    train.add_argument("--seed", type=int, default=final.seed, help="data and batch-plan seed (default %(default)s)")
    add_teacher_option(train)
    train.add_argument(
        "--teacher-steps", type=int, default=teacher.steps, help="teacher training steps (default: the preset's)"
    )
    train.add_argument(
        "--alpha", type=float, default=final.alpha, help="weight of the teacher term (default %(default)s)"
    )
    train.add_argument("--batch", type=int, default=final.batch, help="batch size (default %(default)s)")
    train.add_argument(
        "--lr", type=float, default=final.lr, help="Adam learning rate, cosine decay (default %(default)s)"
    )
    train.add_argument("--loss", default=final.loss, choices=["l1", "charbonnier"], help="loss (default %(default)s)")
    train.add_argument("--restart", action="store_true", help="start from fresh weights, not the stored ones")
    train.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint every N steps (default 50)")
    train.add_argument(
        "--loader-workers",
        type=int,
        default=final.loader_workers,
        help="background processes cutting batches (default: one per 4 cores, 1 to 4; 0: inline)",
    )
    train.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (default: bf16/fp16 AMP)")
    train.add_argument(
        "--teacher-cache-gb",
        type=float,
        default=None,
        help="largest teacher-output cache file (default $NNSEARCH_TEACHER_CACHE_GB or 8); a plan "
        "whose outputs are larger runs the teacher on the fly",
    )
    add_db_option(train)
    train.set_defaults(handler=cmd_train)
