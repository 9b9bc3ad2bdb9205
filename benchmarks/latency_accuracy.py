"""How well does the per-layer lookup table predict whole-model TFLite latency?

Random students of a search space (default: search_spaces/litedenoise.yaml)
are exported with random weights and timed whole on this host (ai-edge-litert,
XNNPACK, 1 thread); the table predicts each from one-op probe timings. Both
sides use the library's statistic: the minimum over runs of the invoking
thread's CPU time (`nnsearch.latency.tflite.time_tflite`, `nnsearch.latency.table`). The
machine is a shared guest, so probes and whole models are timed in
interleaved passes (each pass times every probe and every model once, all in
one fresh random order) and the minimum is taken over all passes; the
agreement of the odd and even passes (repeat vs repeat) is reported next to
the table's.

    python benchmarks/latency_accuracy.py --quick    # 272x480, < 10 min on 2 cores
    python benchmarks/latency_accuracy.py            # 1088x1920 (Full HD, the paper's protocol), 17 min idle

Writes a predicted-vs-measured scatter PNG and a per-model CSV next to it. The
last line reads
`latency_accuracy: n=30 within10=... mape=... spearman=... predict_ms=... measure_ms=...`
(mape as a fraction; the figures are the plain table sum on the test students,
which never enter the calibration fits shown above it).
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch.common.progress import progress  # noqa: E402
from nnsearch.latency import probes as lut_probes  # noqa: E402
from nnsearch.latency import table as latency  # noqa: E402
from nnsearch.latency import tflite  # noqa: E402
from nnsearch.model.arch import Arch  # noqa: E402
from nnsearch.model.space import load_space  # noqa: E402
from nnsearch.model.student import build_student  # noqa: E402

START = time.perf_counter()
QUICK, FULL = (272, 480), (1088, 1920)


@dataclass
class Settings:
    space: str
    height: int
    width: int
    n: int
    calib: int
    passes: int
    runs: int
    probe_runs: int
    seed: int
    clock: str
    out: Path


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="272x480 input instead of 1088x1920")
    parser.add_argument("--space", default="litedenoise")
    parser.add_argument("--n", type=int, default=30, help="test students (never used for calibration)")
    parser.add_argument("--calib", type=int, default=6, help="other students that fit the calibrations")
    parser.add_argument("--passes", type=int, help="interleaved timing passes, even, >= 2 (default 4 quick, 2 full)")
    parser.add_argument("--runs", type=int, help="timed calls per whole model per pass (default 2 quick, 1 full)")
    parser.add_argument(
        "--probe-runs", type=int, help="timed calls per probe per pass, more for short probes (default 2 quick, 1 full)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=("auto", "wall"),
        default="auto",
        help="auto: the library's thread CPU time; wall: wall clock (to see what contention does)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="scatter PNG (default results/benchmarks/latency_accuracy[_quick].png; the CSV goes next to it)",
    )
    a = parser.parse_args(argv)
    height, width = QUICK if a.quick else FULL
    passes = max(a.passes or (4 if a.quick else 2), 2)
    runs = a.runs or (2 if a.quick else 1)
    probe_runs = a.probe_runs or (2 if a.quick else 1)
    out = a.out or ROOT / "results" / "benchmarks" / f"latency_accuracy{'_quick' if a.quick else ''}.png"
    return Settings(a.space, height, width, a.n, a.calib, passes, runs, probe_runs, a.seed, a.clock, out)


def sample_arches(space_name: str, count: int, seed: int) -> list[Arch]:
    """`count` distinct random students of the space."""
    space, rng = load_space(space_name), random.Random(seed)
    arches: dict[Arch, None] = {}
    while len(arches) < count:
        arches[space.sample(lambda _n, choices: rng.choice(list(choices)))] = None
    return list(arches)


@dataclass
class Measured:
    """Whole-model timings of one student: per pass the Timing, plus wall seconds spent."""

    path: Path
    export_s: float
    timings: list[tflite.Timing] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    def best(self, passes: slice = slice(None)) -> float:
        """Minimum over the runs of the chosen passes (the library's statistic)."""
        return min(t.ms for t in self.timings[passes])

    def median(self) -> float:
        return statistics.median(s for t in self.timings for s in t.samples_ms)


def export_all(arches: list[Arch], s: Settings, folder: Path) -> list[Measured]:
    models = []
    for i, arch in enumerate(progress(arches, desc="exporting students")):
        start = time.perf_counter()
        path = tflite.export_tflite(build_student(arch), folder / f"m{i:03d}.tflite", (1, 3, s.height, s.width))
        models.append(Measured(path, time.perf_counter() - start))
    return models


def run_passes(
    models: list[Measured], keys: list[latency.OpKey], probe_dir: Path, s: Settings, device: latency.DeviceProfile
) -> tuple[list[latency.LutEntry], float]:
    """Interleaved passes; in each, every probe and every model is timed once, in one shuffled order.

    Shuffling probes and models together makes both see the same mix of quiet
    and busy moments of the shared machine. Returns the pooled LUT entries
    and the wall seconds the probes took.
    """
    probes = {key: lut_probes.write_probe(key, probe_dir) for key in keys}
    jobs: list[latency.OpKey | int] = [*keys, *range(len(models))]
    entries: list[latency.LutEntry] = []
    probe_s, rng = 0.0, random.Random(s.seed + 1)
    for k in range(s.passes):
        rng.shuffle(jobs)
        for job in progress(jobs, desc=f"pass {k + 1}/{s.passes}"):
            start = time.perf_counter()
            if isinstance(job, int):
                model = models[job]
                model.timings.append(
                    tflite.time_tflite(model.path, runs=s.runs, warmup=1, threads=device.threads, clock=s.clock)
                )
                model.wall_s.append(time.perf_counter() - start)
            else:
                timing = tflite.time_tflite(
                    probes[job],
                    runs=s.probe_runs,
                    warmup=1,
                    threads=device.threads,
                    clock=s.clock,
                    min_total_ms=latency.PROBE_MIN_TOTAL_MS,
                )
                entries.append(latency.LutEntry(device, job, **timing.stat_values()))
                probe_s += time.perf_counter() - start
        print(f"  pass {k + 1}/{s.passes} done ({time.perf_counter() - START:.0f} s)", flush=True)
    return latency.combine_entries(entries), probe_s


def agreement(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """Share within +-10%, mean absolute percentage error (a fraction), Spearman rank correlation."""
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted), np.asarray(measured)
    errors = np.abs(p - m) / m
    return {
        "within10": float(np.mean(errors <= 0.10)),
        "mape": float(np.mean(errors)),
        "spearman": float(spearmanr(p, m).statistic),
        "bias": float(np.median(m / p)),
    }


def fmt(stats: dict[str, float]) -> str:
    return (
        f"within10={stats['within10']:.2f} mape={stats['mape']:.3f} spearman={stats['spearman']:.3f} "
        f"median measured/predicted={stats['bias']:.3f}"
    )


def op_totals(table: latency.LatencyTable, arch: Arch, s: Settings, ops: list[str]) -> list[float]:
    """Predicted ms per op type of one student."""
    totals = dict.fromkeys(ops, 0.0)
    for key, count in table.keys(arch, s.height, s.width):
        totals[key.op] += table.sum_ms(((key, count),))
    return [totals[op] for op in ops]


def alternative_fits(
    measured: np.ndarray, predicted: np.ndarray, by_op: np.ndarray, calib: slice, test: slice
) -> dict[str, np.ndarray]:
    """Test-set predictions of calibration forms fitted on the calibration students only.

    'scale': the library's form (`latency.fit_scale`, median ratio);
    'scale+intercept': least squares measured = a * sum + b;
    'per-op': least squares measured = sum over op types of f_op * op total
    (op types absent from the calibration students keep factor 1).
    """
    scale = latency.fit_scale(list(measured[calib]), list(predicted[calib]))
    a, b = np.linalg.lstsq(np.c_[predicted[calib], np.ones(len(predicted[calib]))], measured[calib], rcond=None)[0]
    used = by_op[calib].sum(axis=0) > 0
    factors = np.ones(by_op.shape[1])
    factors[used] = np.linalg.lstsq(by_op[calib][:, used], measured[calib], rcond=None)[0]
    return {
        "scale": predicted[test] * scale,
        "scale+intercept": a * predicted[test] + b,
        "per-op": by_op[test] @ factors,
    }


def predict_cost_ms(table: latency.LatencyTable, arches: list[Arch], s: Settings) -> tuple[float, float]:
    """(first call incl. key decomposition, warm call) mean ms per prediction."""
    lut_probes.arch_keys.cache_clear()
    start = time.perf_counter()
    for a in arches:
        table.predict(a, s.height, s.width)
    cold = (time.perf_counter() - start) * 1000 / len(arches)
    reps = 200
    start = time.perf_counter()
    for _ in range(reps):
        for a in arches:
            table.predict(a, s.height, s.width)
    return cold, (time.perf_counter() - start) * 1000 / (reps * len(arches))


def plot(
    predicted: list[float], measured: list[float], half_a: list[float], half_b: list[float], s: Settings, clock: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    panels = [
        (
            axes[0],
            measured,
            predicted,
            "measured whole model (min) ms",
            "LUT prediction (sum of mins) ms",
            "table vs measurement",
        ),
        (axes[1], half_a, half_b, "odd passes (min) ms", "even passes (min) ms", "repeat vs repeat"),
    ]
    for ax, x, y, xlabel, ylabel, title in panels:
        lo, hi = min(min(x), min(y)) * 0.8, max(max(x), max(y)) * 1.2
        line = np.array([lo, hi])
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="+-10%")
        ax.plot(line, line, "k--", lw=0.8)
        ax.scatter(x, y, s=18)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title, xlim=(lo, hi), ylim=(lo, hi))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            axis.set_minor_formatter(ticker.NullFormatter())
        ax.legend(loc="upper left")
    fig.suptitle(
        f"{len(measured)} {s.space} test students at {s.height}x{s.width}, {tflite.runtime_version()}, "
        f"1 thread, {clock} clock"
    )
    fig.tight_layout()
    s.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(s.out, dpi=120)
    plt.close(fig)


def write_csv(
    path: Path,
    arches: list[Arch],
    models: list[Measured],
    predicted: list[float],
    by_op: np.ndarray,
    ops: list[str],
    n: int,
) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        passes = len(models[0].timings)
        writer.writerow(
            [
                "index",
                "role",
                "nn",
                "arch",
                "measured_min_ms",
                "measured_median_ms",
                "predicted_ms",
                *[f"pass{k + 1}_min_ms" for k in range(passes)],
                *[f"pred_{op.lower()}_ms" for op in ops],
                "export_s",
                "time_s_per_pass",
            ]
        )
        for i, (arch, model) in enumerate(zip(arches, models, strict=True)):
            writer.writerow(
                [
                    i,
                    "test" if i < n else "calibration",
                    arch.name,
                    arch.describe(),
                    f"{model.best():.3f}",
                    f"{model.median():.3f}",
                    f"{predicted[i]:.3f}",
                    *[f"{t.min_ms:.3f}" for t in model.timings],
                    *[f"{v:.3f}" for v in by_op[i]],
                    f"{model.export_s:.3f}",
                    f"{statistics.mean(model.wall_s):.3f}",
                ]
            )


def main(argv: list[str] | None = None) -> None:
    s = parse_args(argv)
    device = latency.host_profile(1)
    arches = sample_arches(s.space, s.n + s.calib, s.seed)
    n = s.n
    table = latency.LatencyTable(device)
    keys = sorted({key for a in arches for key, _ in table.keys(a, s.height, s.width)})
    clock = tflite.resolve_clock(s.clock, device.threads)
    print(
        f"latency_accuracy: {n} test + {s.calib} calibration students of '{s.space}' at {s.height}x{s.width}"
        f"{' (--quick: reduced from 1088x1920)' if (s.height, s.width) == QUICK else ''}; {device}; "
        f"{len(keys)} LUT keys; {s.passes} interleaved passes x ({s.runs} run(s) per model, >= {s.probe_runs} per "
        f"probe); statistic: min of {clock} time",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="latency-accuracy-") as folder:
        models = export_all(arches, s, Path(folder))
        entries, probe_s = run_passes(models, keys, Path(folder) / "probes", s, device)
    table.add(entries)

    measured = np.array([m.best() for m in models])
    half_a = [m.best(slice(0, None, 2)) for m in models[:n]]
    half_b = [m.best(slice(1, None, 2)) for m in models[:n]]
    predicted = np.array([table.predict(a, s.height, s.width) for a in arches])
    ops = sorted({key.op for key in keys})
    by_op = np.array([op_totals(table, a, s, ops) for a in arches])
    plain = agreement(list(predicted[:n]), list(measured[:n]))
    repeat = agreement(half_b, half_a)
    medians = agreement(list(predicted[:n]), [m.median() for m in models[:n]])
    cold_ms, warm_ms = predict_cost_ms(table, arches[:n], s)
    measure_ms = statistics.mean(m.export_s + statistics.mean(m.wall_s) for m in models[:n]) * 1000
    plot(list(predicted[:n]), list(measured[:n]), half_a, half_b, s, clock)
    csv_path = s.out.with_suffix(".csv")
    write_csv(csv_path, arches, models, list(predicted), by_op, ops, n)

    print(
        f"measured whole-model latency (min of {clock} time): median {np.median(measured[:n]):.1f} ms, "
        f"range {measured[:n].min():.1f}-{measured[:n].max():.1f} ms"
    )
    print(f"table, plain sum (the library's prediction): {fmt(plain)}")
    print(f"repeat vs repeat (odd vs even passes):       {fmt(repeat)}")
    print(f"plain sum vs measured median of runs:        {fmt(medians)}")
    if s.calib >= 2:
        fits = alternative_fits(measured, predicted, by_op, slice(n, None), slice(0, n))
        scale = latency.fit_scale(list(measured[n:]), list(predicted[n:]))
        print(f"calibration scale (median measured/predicted of the {s.calib} calibration students): {scale:.3f}")
        for form, values in fits.items():
            print(
                f"calibrated ({form}, fitted on the {s.calib} calibration students): "
                f"{fmt(agreement(list(values), list(measured[:n])))}"
            )
    print(
        f"cost: probes {probe_s:.1f} s for {len(keys)} keys x {s.passes} passes; prediction {warm_ms * 1000:.1f} us "
        f"warm, {cold_ms:.1f} ms with key decomposition; one measurement (export + interpreter + 1 warm-up + "
        f"{s.runs} run(s)) {measure_ms:.0f} ms; total {time.perf_counter() - START:.0f} s"
    )
    print(f"scatter plot: {s.out}; per-student CSV: {csv_path}")
    print(
        f"latency_accuracy: n={n} within10={plain['within10']:.2f} mape={plain['mape']:.3f} "
        f"spearman={plain['spearman']:.3f} predict_ms={warm_ms:.4f} measure_ms={measure_ms:.0f}"
    )


if __name__ == "__main__":
    main()
