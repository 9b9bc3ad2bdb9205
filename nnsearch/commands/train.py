"""`nnsearch train NN`: the long, final distillation of a recorded student (resumable)."""

from __future__ import annotations

import argparse

from nnsearch.commands import add_db_option, max_side


def cmd_train(args: argparse.Namespace) -> int:
    from nnsearch.commands.study import parse_crops
    from nnsearch.store.engine import Store
    from nnsearch.train.distill import DistillConfig
    from nnsearch.train.final_training import FinalTraining, train_student, with_defaults

    base = DistillConfig(batch=args.batch, lr=args.lr, alpha=args.alpha, loss=args.loss, seed=args.seed,
                         amp=not args.no_amp, loader_workers=args.loader_workers)
    request = FinalTraining(
        nn=args.nn, distill=with_defaults(base, args.steps, parse_crops(args.crops), args.epochs),
        data_spec=args.data, max_side=args.max_side, teacher=args.teacher, teacher_steps=args.teacher_steps,
        restart=args.restart, checkpoint_every=args.checkpoint_every,
        teacher_cache_bytes=None if args.teacher_cache_gb is None else int(args.teacher_cache_gb * 2**30),
    )
    store = Store(args.db, create=False)
    try:
        print(train_student(request, store).line())
    finally:
        store.dispose()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a recorded student for longer (progressive crops); resumable")
    train.add_argument("nn", help="model name, e.g. DenoiseUNet-3f2a9c1b7e")
    train.add_argument("--steps", type=int, default=2000, help="training steps (default %(default)s)")
    train.add_argument("--crops", default="64,128,256,512,1024",
                       help="crop sizes in equal shares of the steps (default: the paper's %(default)s; sizes "
                            "larger than the smallest training image are cut to fit it)")
    train.add_argument("--epochs", type=int, default=None, help="validations (default: one per crop size)")
    train.add_argument("--data", default=None, help="dataset path, 'clean:PATH', or omitted for the built-in data")
    train.add_argument("--max-side", type=max_side, default=None, help="centre-crop images to at most PX per side")
    train.add_argument("--seed", type=int, default=0, help="data and batch-plan seed (default 0)")
    train.add_argument("--teacher", default="cpu", help="teacher preset: cpu (default) or paper")
    train.add_argument("--teacher-steps", type=int, default=None, help="teacher training steps (default: preset's)")
    train.add_argument("--alpha", type=float, default=0.9, help="weight of the teacher term (default %(default)s)")
    train.add_argument("--batch", type=int, default=8, help="batch size (default %(default)s)")
    train.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine decay (default %(default)s)")
    train.add_argument("--loss", default="l1", choices=["l1", "charbonnier"])
    train.add_argument("--restart", action="store_true", help="start from fresh weights, not the stored ones")
    train.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint every N steps (default 50)")
    train.add_argument("--loader-workers", type=int, default=None,
                       help="background processes cutting batches (default: one per 4 cores, 1 to 4; 0: inline)")
    train.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA (default: bf16/fp16 AMP)")
    train.add_argument("--teacher-cache-gb", type=float, default=None,
                       help="largest teacher-output cache file (default $NNSEARCH_TEACHER_CACHE_GB or 8); a plan "
                            "whose outputs are larger runs the teacher on the fly")
    add_db_option(train)
    train.set_defaults(handler=cmd_train)
