"""The headline: do searched students denoise real photos at least as well as LiteDenoiseNet, as fast?

1. Train data: the real pairs of ../shared/data/real/polyu (its own split gives the
   validation pairs a study checks candidates on). The teacher is the `cpu` preset
   trained on them (cached), checked against the noisy input like any study's.
2. Budget: LiteDenoiseNet's (the reference point of search_spaces/litedenoise.yaml)
   predicted latency at 1088x1920 on this host (1 thread), from the lookup table.
3. A search study on litedenoise.yaml within that budget (alpha 0.9, the guided sampler),
   started from the space's reference (LiteDenoiseNet is its first trial), as a user
   improving on a hand design would run it.
4. LiteDenoiseNet itself, distilled from the same teacher on the same batch plan and budget.
5. The best student (highest validation PSNR within the budget) retrained with alpha 0
   (no teacher), same budget: `kd_gain_db`.
6. Everything is evaluated at full resolution on every pair of ../shared/data/real/nam,
   which none of them trained on; the best student is exported (.onnx with dynamic
   height and width, .tflite) to results/benchmarks/real_quality/.

    python benchmarks/real_quality.py --quick   # polyu at <= 256 px, 8 trials x 600 steps, teacher 1200 steps
    python benchmarks/real_quality.py           # polyu at 512 px, 24 trials x 1200 steps

Writes results/benchmarks/real_quality/{scores.csv,summary.txt,crops.png} and the
exported student. The last line reads
`real_quality: best_gain_db=... litedenoise_gain_db=... best_vs_litedenoise_db=... best_latency_ratio=...
kd_gain_db=... teacher_gain_db=...` (gains over the noisy input on the Nam pairs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.analysis.evaluate import (  # noqa: E402
    CLASSICAL,
    NOISY,
    Method,
    evaluate_methods,
    format_summary,
    model_method,
    nl_means,
    write_evaluation,
)
from nnsearch.export.student import export_student  # noqa: E402
from nnsearch.latency.service import predict_latency  # noqa: E402
from nnsearch.model.arch import Arch  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.model.student import build_student  # noqa: E402
from nnsearch.search.study import LatencyConfig, Study, StudyConfig  # noqa: E402
from nnsearch.store.engine import Store  # noqa: E402
from nnsearch.store.stored_model import build_model, load_stored_model  # noqa: E402
from nnsearch.train.datasets import load_data  # noqa: E402
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "results" / "benchmarks" / "real_quality"
START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:5.0f} s] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="polyu at <= 256 px, 8 trials x 600 steps")
    parser.add_argument("--trials", type=int, help="search trials (default 8 quick, 24 full)")
    parser.add_argument("--steps", type=int, help="distillation steps per candidate (default 600 quick, 1200 full)")
    parser.add_argument("--train", default=str(SHARED / "polyu"), help="training pairs (default polyu)")
    parser.add_argument("--eval", default=str(SHARED / "nam"), help="evaluation pairs (default nam)")
    parser.add_argument("--db", default=None, help="store (default: a temporary SQLite file)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.trials = args.trials or (8 if args.quick else 24)
    args.steps = args.steps or (600 if args.quick else 1200)
    args.max_side = 256 if args.quick else None
    return args


def trained(arch: Arch, targets: TeacherTargets, data, config: DistillConfig) -> torch.nn.Module:
    """`arch` distilled on `targets` with `config` (seeded as a study's candidate)."""
    torch.manual_seed(config.seed)
    student = build_student(arch)
    distill(student, targets, data.val, config)
    return student.eval()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_data(args.train, max_side=args.max_side)
    real = load_data(args.eval)
    real_pairs = list(real.train + real.val)
    log(f"train {data.name}: {len(data.train)} train / {len(data.val)} val (max side {args.max_side}); "
        f"evaluate on {len(real_pairs)} {real.name} pairs; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="real-quality-") as scratch:
        store = Store(args.db or f"sqlite:///{Path(scratch) / 'store.db'}")
        space = load_space("litedenoise")
        lite = space.reference("LiteDenoiseNet")
        budget = predict_latency(store, lite, "host-cpu", 1088, 1920, threads=1)
        log(f"budget: LiteDenoiseNet predicted {budget:.1f} ms at 1088x1920 (host-cpu, 1 thread)")
        distill_config = DistillConfig(steps=args.steps, epochs=2, batch=8, crops=(48, 64), alpha=0.9)
        config = StudyConfig(name="real-quality", space=space, data_spec=args.train, max_side=args.max_side,
                             teacher_steps=1200 if args.quick else None,  # quick: the teacher distill.py --quick uses
                             distill=distill_config, max_latency_ms=budget, start_from_references=True,
                             latency=LatencyConfig(height=1088, width=1920, threads=1, measure=False))
        study = Study(config, store, data=data)
        study.run(args.trials)
        targets = study.targets()
        quality = study.optuna.user_attrs.get("teacher_psnr")
        rows = study.results()
        done = rows[(rows["state"] == "complete") & (rows["latency_ms"] <= budget)]
        if done.empty:
            raise SystemExit("real_quality: no student finished within the budget; run more --trials")
        best = done.sort_values("psnr", ascending=False).iloc[0]
        stored = load_stored_model(store, best["nn"])
        best_model = build_model(stored, (1, 3, 64, 64))
        log(f"best student {best['nn']}: {stored.arch.describe()}, validation {best['psnr']:.2f} dB, "
            f"predicted {best['latency_ms']:.1f} ms (teacher validation {quality:.2f} dB)")

        log("training LiteDenoiseNet with the same teacher, plan and budget")
        lite_model = trained(lite, targets, data, distill_config)
        log("training the best student without the teacher (alpha 0), same budget")
        plain = trained(stored.arch, TeacherTargets.build(None, data, replace(distill_config, alpha=0.0)), data,
                        replace(distill_config, alpha=0.0))
        teacher = targets_teacher(study)

        methods = [Method(NOISY, lambda noisy: noisy), model_method(f"best {best['nn']}", best_model),
                   model_method("LiteDenoiseNet", lite_model), model_method("best, alpha 0", plain),
                   model_method("teacher", teacher), Method(CLASSICAL, nl_means)]
        evaluation = evaluate_methods(methods, real_pairs)
        write_evaluation(evaluation, args.out)
        print(format_summary(evaluation))
        export = export_student(best["nn"], args.out, db=store, resolution=(256, 256))
        log(export.line())
        store.dispose()

    gain = evaluation.gain
    best_gain, lite_gain = gain(f"best {best['nn']}"), gain("LiteDenoiseNet")
    print(f"real_quality: best_gain_db={best_gain:.2f} litedenoise_gain_db={lite_gain:.2f} "
          f"best_vs_litedenoise_db={best_gain - lite_gain:.2f} best_latency_ratio={best['latency_ms'] / budget:.2f} "
          f"kd_gain_db={best_gain - gain('best, alpha 0'):.2f} teacher_gain_db={gain('teacher'):.2f}")


def targets_teacher(study: Study) -> torch.nn.Module:
    """The study's (checked, cached) teacher module."""
    from nnsearch.train.teacher_check import load_teacher

    return load_teacher(study.config.teacher, study.data, device="cpu", verbose=False).module


if __name__ == "__main__":
    main()
