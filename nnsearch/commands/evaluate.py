"""`nnsearch evaluate NN --data DIR`: a recorded student on any folder of pairs, next to the noisy input,
a teacher and a classical denoiser (table, CSV and a PNG of crops)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnsearch.commands import add_data_options, add_db_option, add_out_option, add_trust_option


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nnsearch.analysis.evaluate import evaluate_methods, format_summary, standard_methods, write_evaluation
    from nnsearch.common.device import default_device
    from nnsearch.common.paths import default_results_root, safe_component
    from nnsearch.store.engine import open_store
    from nnsearch.store.stored_model import build_model, load_stored_model
    from nnsearch.train.datasets import load_data
    from nnsearch.train.teacher_check import load_teacher

    device = default_device()
    with open_store(args.db) as store:
        stored = load_stored_model(store, args.nn)
    student = build_model(stored, (1, 3, 64, 64), trust_code=args.trust_code).to(device)
    data = load_data(args.data, max_side=args.max_side)
    pairs = list(data.train + data.val)  # every pair, both sides of the split
    print(f"data: {data.source}: {len(pairs)} pairs")
    teacher = None
    if args.teacher:
        prepared = load_teacher(args.teacher, load_data(args.teacher_data), device=device)
        teacher = (f"teacher ({prepared.name})", prepared.module)
    methods = standard_methods((f"student {args.nn}", student), teacher, classical=not args.no_classical, device=device)
    evaluation = evaluate_methods(methods, pairs)
    out = (
        Path(args.out)
        if args.out
        else (
            default_results_root()
            / "evaluate"
            / safe_component(args.nn, "model name")
            / safe_component(data.name, "dataset name")
        )
    )
    csv_path, table_path, png_path = write_evaluation(evaluation, out)
    print(format_summary(evaluation))
    print(f"wrote {table_path}, {csv_path} and {png_path}")
    summary = evaluation.summary()
    parts = [f"{row.method} {row.psnr:.2f} dB ({row.gain_db:+.2f})" for row in summary.iloc[1:].itertuples()]
    print(
        f"evaluate: {args.nn} on {data.name} ({len(pairs)} pairs, noisy input {summary.psnr.iloc[0]:.2f} dB): "
        + ", ".join(parts)
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="full-resolution PSNR/SSIM of a recorded student on a folder of "
        "pairs, next to the noisy input, a teacher and non-local means",
    )
    evaluate.add_argument("nn", metavar="NN", help="name of a recorded student (see `nnsearch pareto`)")
    add_data_options(
        evaluate,
        required=True,
        data_help="folder of noisy/clean pairs (any layout `nnsearch search --data` reads), or "
        "'clean:DIR' for clean images with synthetic noise",
    )
    evaluate.add_argument(
        "--teacher",
        default=None,
        metavar="PRESET|PATH",
        help="also evaluate a teacher: a teacher file, or a preset (cached or trained on --teacher-data)",
    )
    evaluate.add_argument(
        "--teacher-data",
        default=None,
        metavar="SPEC",
        help="data a preset teacher is trained on (default: the built-in data)",
    )
    evaluate.add_argument("--no-classical", action="store_true", help="skip the non-local-means baseline")
    add_out_option(evaluate, "where to write summary.txt, scores.csv, crops.png (default results/evaluate/NN/DATA)")
    add_trust_option(evaluate, "build a student whose stored code is not nnsearch's own (an imported model)")
    add_db_option(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)
