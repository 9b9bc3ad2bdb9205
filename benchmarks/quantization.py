"""How much quality do students lose when quantized, and does the ranking hold?

Students are sampled (seeded) from search_spaces/litedenoise.yaml, with the
global residual fixed on, and trained briefly, without a teacher (alpha 0), on
the real noisy/clean pairs of PolyU
(../shared/data/real/polyu, downscaled to --train-side px). Each is then
quantized to every precision (`nnsearch.export.precisions.StudentQuantizer`:
int8 = static_wi8_ai8, w8a16 = static_wi8_ai16, fp16 = float16 weights),
calibrated on 8 seeded 64 px crops of the PolyU training images, and evaluated
from each .tflite file's ai-edge-litert output (fp32 too, the same tiled path)
on real pairs none of them saw: centre crops (--eval-side px, real noise kept,
nothing resampled) of the Nam et al. pairs (../shared/data/real/nam). Host
latency of the fp32 and int8 files at --resolution, one thread, is measured
side by side: per student fp32, int8, fp32, int8, ... (--passes), minimum of
each. Why the global residual is fixed: a student without it must learn to
reproduce the image from scratch, and after a brief training it sits at
11-13 dB (measured: 60 steps), where any perturbation moves PSNR by decibels
and the figures say nothing about quantizing a useful denoiser.

    python benchmarks/quantization.py --quick   # 12 students, 40 steps, 6 Nam crops of 128 px, 256x256 latency
    python benchmarks/quantization.py           # 16 students, 300 steps, 12 Nam crops of 256 px, 544x960

Writes results/benchmarks/quantization.csv (per student and precision) and
quantization.png (int8 vs fp32 PSNR per student; drop per precision). The
last line reads `quantization: n=... drop_int8_db=... drop_w8a16_db=...
drop_fp16_db=... max_drop_int8_db=... rank_spearman_int8=... speedup_int8=...`:
mean PSNR drops vs fp32, the largest int8 drop, Spearman's rank correlation of
the students' fp32 and int8 PSNR, and the geometric mean over students of
fp32 / int8 host latency.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.common.precision import PRECISIONS, Precision  # noqa: E402
from nnsearch.export.precisions import StudentQuantizer  # noqa: E402
from nnsearch.latency.tflite import time_tflite  # noqa: E402
from nnsearch.model.arch import Arch  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.model.student import build_student  # noqa: E402
from nnsearch.train.datasets import ImagePair, Pair, load_data  # noqa: E402
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "real"


@dataclass(frozen=True)
class Settings:
    """The benchmark's budget; the defaults are --quick's."""

    students: int = 12
    steps: int = 40
    train_side: int = 128
    eval_pairs: int = 6
    eval_side: int = 128
    resolution: tuple[int, int] = (256, 256)
    passes: int = 2
    seed: int = 0
    out: Path = ROOT / "results" / "benchmarks" / "quantization.png"


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 students, short training, small images")
    parser.add_argument("--students", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "quantization.png")
    args = parser.parse_args(argv)
    full: dict[str, Any] = (
        {}
        if args.quick
        else dict(students=16, steps=300, train_side=256, eval_pairs=12, eval_side=256, resolution=(544, 960), passes=3)
    )
    if args.students is not None:
        full["students"] = args.students
    return Settings(**full, seed=args.seed, out=args.out)


def centre_crops(pairs: Sequence[Pair], side: int) -> list[ImagePair]:
    """Centre `side` px crops of each pair: real noise, no resampling."""
    out = []
    for p in pairs:
        h, w = p.noisy.shape[:2]
        y, x = (h - side) // 2, (w - side) // 2
        out.append(
            ImagePair(
                p.name,
                np.ascontiguousarray(p.noisy[y : y + side, x : x + side]),
                np.ascontiguousarray(p.clean[y : y + side, x : x + side]),
            )
        )
    return out


def sample_students(count: int, seed: int) -> list[Arch]:
    """`count` distinct students of litedenoise.yaml, drawn with a seeded chooser (global residual on)."""
    space, rng = load_space("litedenoise"), random.Random(seed)
    found: dict[str, Arch] = {}
    choose = lambda name, choices: True if name == "global_residual" else rng.choice(list(choices))  # noqa: E731
    while len(found) < count:
        arch = space.sample(choose)
        found.setdefault(arch.name, arch)
    return list(found.values())


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    s = parse_args(argv)
    began = time.perf_counter()
    train = load_data(DATA / "polyu", max_side=s.train_side, seed=s.seed)
    nam = load_data(DATA / "nam", seed=s.seed)
    evaluation = centre_crops(list(nam.train + nam.val)[: s.eval_pairs], s.eval_side)
    config = DistillConfig(steps=s.steps, epochs=1, batch=4, crops=(64,), alpha=0.0, seed=s.seed, lr=2e-3)
    targets = TeacherTargets.build(None, train, config, multiple=32)
    val = list(train.val[:2])
    print(
        f"train: {train.source}: {len(train.train)} pairs at <= {s.train_side} px; evaluation: {len(evaluation)} "
        f"Nam crops of {s.eval_side} px; {s.students} students x {s.steps} steps",
        flush=True,
    )
    rows, ratios = [], []
    for index, arch in enumerate(sample_students(s.students, s.seed)):
        torch.manual_seed(s.seed + index)
        net = build_student(arch)
        distill(net, targets, val, config)
        net = net.cpu().eval()
        with StudentQuantizer(net, arch.name, train.train, seed=s.seed) as quantizer:
            quality = {p: quantizer.quality(p, evaluation) for p in PRECISIONS}
            files = {p: quantizer.variant(p, *s.resolution) for p in ("fp32", "int8")}
            times: dict[str, list[float]] = {"fp32": [], "int8": []}
            for _ in range(s.passes):
                for p, path in files.items():
                    times[p].append(time_tflite(path, runs=3, warmup=1).ms)
        ms = {p: min(v) for p, v in times.items()}
        ratios.append(ms["fp32"] / ms["int8"])
        fp32_db = quality[Precision.FP32].psnr
        for p in PRECISIONS:
            rows.append(
                {
                    "nn": arch.name,
                    "arch": arch.describe(),
                    "precision": p,
                    "psnr": quality[p].psnr,
                    "ssim": quality[p].ssim,
                    "drop_db": fp32_db - quality[p].psnr,
                    "latency_ms": ms.get(p, math.nan),
                    "eval_s": quality[p].seconds,
                }
            )
        drops = " ".join(f"{p} {fp32_db - quality[p].psnr:+.3f}" for p in PRECISIONS[1:])
        print(
            f"[{index + 1}/{s.students}] {arch.describe()}: fp32 {fp32_db:.2f} dB, drop {drops} dB; "
            f"{ms['fp32']:.1f} / {ms['int8']:.1f} ms fp32 / int8 ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    summary = summarize(rows, ratios)
    write_outputs(rows, s.out)
    print(f"wrote {s.out.with_suffix('.csv')} and {s.out} ({time.perf_counter() - began:.0f} s)")
    print("quantization: " + " ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def summarize(rows: list[dict], ratios: list[float]) -> dict[str, str]:
    by = {p: [r for r in rows if r["precision"] == p] for p in PRECISIONS}
    drop = {p: statistics.mean(r["drop_db"] for r in by[p]) for p in PRECISIONS}
    fp32, int8 = by[Precision.FP32], by[Precision.INT8]
    return {
        "n": str(len(fp32)),
        "drop_int8_db": f"{drop[Precision.INT8]:.3f}",
        "drop_w8a16_db": f"{drop[Precision.W8A16]:.3f}",
        "drop_fp16_db": f"{drop[Precision.FP16]:.3f}",
        "max_drop_int8_db": f"{max(r['drop_db'] for r in int8):.3f}",
        "rank_spearman_int8": f"{spearman([r['psnr'] for r in fp32], [r['psnr'] for r in int8]):.3f}",
        "speedup_int8": f"{math.exp(statistics.mean(math.log(r) for r in ratios)):.2f}",
    }


def write_outputs(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png.parent.mkdir(parents=True, exist_ok=True)
    with png.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fp32 = [r["psnr"] for r in rows if r["precision"] == "fp32"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for p, marker in (("int8", "o"), ("w8a16", "s"), ("fp16", "^")):
        left.scatter(fp32, [r["psnr"] for r in rows if r["precision"] == p], marker=marker, label=p, alpha=0.7)
    lo, hi = min(fp32) - 0.5, max(fp32) + 0.5
    left.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    left.set(xlabel="fp32 PSNR (dB)", ylabel="quantized PSNR (dB)", title="per student, Nam crops")
    left.legend()
    right.boxplot(
        [[r["drop_db"] for r in rows if r["precision"] == p] for p in PRECISIONS[1:]], tick_labels=list(PRECISIONS[1:])
    )
    right.axhline(0, color="k", lw=0.8)
    right.set(ylabel="PSNR drop vs fp32 (dB)", title="drop per precision")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
