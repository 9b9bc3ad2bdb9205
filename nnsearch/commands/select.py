"""`nnsearch pareto`, `export` and `report`: choose students, ship them, report on a study."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nnsearch.commands import (
    add_data_options,
    add_db_option,
    add_out_option,
    add_precision_option,
    add_trust_option,
    parse_precision,
    parse_resolution,
)
from nnsearch.commands.store import _filters, _plain, _print_frame
from nnsearch.common.precision import CALIBRATION_SAMPLES

DEFAULT_OBJECTIVES_TEXT = "psnr:max,latency_ms:min"
SHOWN = ["nn", "dataset", "rung", "psnr", "ssim", "params", "gmacs"]


def _constraints(args: argparse.Namespace) -> dict[str, tuple[str, float]]:
    constraints: dict[str, tuple[str, float]] = {}
    if args.max_latency_ms is not None:
        constraints["latency_ms"] = ("<=", args.max_latency_ms)
    if args.min_psnr is not None:
        constraints["psnr"] = (">=", args.min_psnr)
    return constraints


def cmd_pareto(args: argparse.Namespace) -> int:
    from nnsearch.analysis.pareto import (
        default_reference,
        hypervolume,
        knee_point,
        pareto,
        parse_objectives,
    )
    from nnsearch.analysis.report import candidates
    from nnsearch.errors import NNSearchError
    from nnsearch.store.engine import Store

    objectives = parse_objectives(args.objectives)
    precision = parse_precision(args.precision)
    store = Store(args.db, create=False)
    try:
        rows = candidates(db=store, device=args.device, precision=precision, **_filters(args))
    finally:
        store.dispose()
    front = pareto(rows, objectives, _constraints(args))
    if front.empty:
        raise NNSearchError(
            f"no student has all of {list(objectives)} and meets the constraints "
            f"({len(rows)} candidates matched the filters)"
        )
    knee = knee_point(front, objectives)
    reference = default_reference(rows, objectives)
    volume = hypervolume(front[list(objectives)].to_numpy(float), list(reference.values()), list(objectives.values()))
    shown = front[SHOWN + [c for c in objectives if c not in SHOWN]].assign(knee=front["nn"] == knee["nn"])
    if args.format == "json":
        print(
            json.dumps(
                {
                    "objectives": objectives,
                    "constraints": _constraints(args),
                    "knee": knee["nn"],
                    "hypervolume": volume,
                    "reference": reference,
                    "front": [{k: _plain(v) for k, v in r.items()} for r in shown.to_dict("records")],
                },
                indent=1,
            )
        )
        return 0
    _print_frame(shown, args.format)
    summary = (
        f"{len(front)} of {len(rows)} candidates non-dominated; knee {knee['nn']}; hypervolume "
        f"{volume:.6g} w.r.t. reference " + ", ".join(f"{c}={v:.6g}" for c, v in reference.items())
    )
    print(summary, file=sys.stderr if args.format == "csv" else sys.stdout)
    return 0


def _study_resolution(nn: str, db: str | None) -> tuple[str, tuple[int, int]] | None:
    """(study, HxW) of the first study (by name) that recorded `nn`: the resolution its configuration times at."""
    from sqlalchemy import select

    from nnsearch.store.engine import Store
    from nnsearch.store.schema import TrialLink
    from nnsearch.store.timings import study_configuration

    store = Store(db, create=False)
    try:
        with store.session() as session:
            studies = sorted(set(session.scalars(select(TrialLink.study).where(TrialLink.nn == nn))))
        for study in studies:
            target = study_configuration(store, study)
            if target.height is not None and target.width is not None:
                return study, (target.height, target.width)
        return None
    finally:
        store.dispose()


def _export_resolution(args: argparse.Namespace) -> tuple[int, int]:
    """`--resolution`, else the resolution of the study that found the student, else the fallback; says which."""
    from nnsearch.export.student import FALLBACK_RESOLUTION

    if args.resolution is not None:
        return parse_resolution(args.resolution)
    found = _study_resolution(args.nn, args.db)
    if found is None:
        height, width = FALLBACK_RESOLUTION
        print(f"export: no study recorded {args.nn}, so the .tflite input is {height}x{width} (--resolution to choose)")
        return FALLBACK_RESOLUTION
    study, (height, width) = found
    print(f"export: .tflite input {height}x{width}, the resolution study '{study}' times at (--resolution to choose)")
    return height, width


def cmd_export(args: argparse.Namespace) -> int:
    from nnsearch.export.student import export_student

    result = export_student(
        args.nn,
        args.out,
        db=args.db,
        resolution=_export_resolution(args),
        prm=args.prm,
        weights_file=args.weights,
        data_spec=args.data,
        max_side=args.max_side,
        trust_code=args.trust_code,
        **({} if args.calibration_samples is None else {"calibration_samples": args.calibration_samples}),
    )
    for path in result.files:
        print(path)
    print(result.line())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnsearch.analysis.report import write_report

    report = write_report(
        args.study,
        db=args.db,
        results_root=Path(args.out) if args.out else None,
        device=args.device,
        precision=parse_precision(args.precision),
    )
    print(f"wrote {report.path} with {len(report.images)} plot(s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    front: Any = sub.add_parser("pareto", help="print the non-dominated students, the knee point and the hypervolume")
    for name in ("study", "task", "dataset", "nn"):
        front.add_argument(f"--{name}", action="append", help=f"keep students with this {name} (repeat for any of)")
    front.set_defaults(metric=None, epoch=None)  # the data() filters pareto does not offer
    front.add_argument(
        "--objectives",
        default=DEFAULT_OBJECTIVES_TEXT,
        help="COLUMN:min|max, comma-separated (default %(default)s); columns include psnr, ssim, "
        "params, macs, gmacs, latency_ms (on --device) and latency_ms@DEVICE",
    )
    front.add_argument("--device", default="host-cpu", help="device profile of the latency_ms column")
    front.add_argument("--max-latency-ms", type=float, default=None, help="keep students at most this slow")
    front.add_argument("--min-psnr", type=float, default=None, help="keep students with at least this PSNR (dB)")
    front.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_precision_option(front, "psnr, ssim and latency_ms of the students quantized to this precision")
    add_db_option(front)
    front.set_defaults(handler=cmd_pareto)

    export = sub.add_parser("export", help="write a student as verified .tflite and .onnx, .py + .pt, MODEL_CARD.md")
    export.add_argument("nn", help="model name, e.g. DenoiseUNet-3f2a9c1b7e")
    add_out_option(export, "target folder (created if missing)", required=True, old=("--to",))
    export.add_argument(
        "--resolution",
        default=None,
        metavar="HxW",
        help="input size of the .tflite file (fixed) and of the verification, e.g. 1088x1920 "
        "(default: the resolution of the study that found the student, else 256x256)",
    )
    export.add_argument(
        "--prm",
        default=None,
        help="hyperparameter set (uid) whose weights to ship (default: the set with the best final PSNR)",
    )
    export.add_argument(
        "--weights",
        default=None,
        help="a state_dict (.pt, torch.save) of the model's Net to export instead of its stored "
        "weights, e.g. for a model imported from the NN Dataset",
    )
    add_data_options(
        export,
        data_help="data whose training crops calibrate the int8 / w8a16 files and whose "
        "validation images measure each precision (as `search --data`; default "
        "built-in)",
    )
    export.add_argument(
        "--calibration-samples",
        type=int,
        default=None,
        metavar="N",
        help=f"seeded 64 px training crops for calibration (default {CALIBRATION_SAMPLES})",
    )
    add_trust_option(export, "export a model whose stored code is not nnsearch's own (an imported model)")
    add_db_option(export)
    export.set_defaults(handler=cmd_export)

    report = sub.add_parser("report", help="write results/<study>/report.md with plots")
    report.add_argument("--study", required=True)
    report.add_argument("--device", default="host-cpu", help="device profile of the latency figures")
    add_precision_option(report, "report the quality and latency of this precision")
    add_out_option(
        report,
        "results folder; the report goes to DIR/<study>/ (default: results/ of the checkout, "
        "else of the current directory, or $NNSEARCH_RESULTS)",
        old=("--results",),
    )
    add_db_option(report)
    report.set_defaults(handler=cmd_report)
