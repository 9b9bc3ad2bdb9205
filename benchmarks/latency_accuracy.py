"""How well does the per-layer lookup table predict whole-model TFLite latency?

Random students of a search space (default: search_spaces/litedenoise.yaml)
are exported with random weights and timed whole on this host (ai-edge-litert,
XNNPACK, 1 thread); the table predicts each from one-op probe timings. The
machine is a noisy shared guest, so the table's probes and the whole models
are timed in interleaved passes (each pass times every probe and every model
once, all in one fresh random order) and medians are taken across passes; the agreement of two
halves of the passes (repeat vs repeat) is reported next to the table's.

    python benchmarks/latency_accuracy.py --quick    # 272x480, < 10 min on 2 cores
    python benchmarks/latency_accuracy.py            # 1088x1920 (Full HD, the paper's protocol)

The last line reads
`latency_accuracy: n=30 within10=... mape=... spearman=... predict_ms=... measure_ms=...`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsearch import latency, lut_probes, tflite  # noqa: E402
from nnsearch.arch import Arch  # noqa: E402
from nnsearch.space import load_space  # noqa: E402
from nnsearch.student import build_student  # noqa: E402

START = time.perf_counter()


@dataclass
class Settings:
    space: str
    height: int
    width: int
    n: int
    calib: int
    passes: int
    runs: int
    seed: int
    threads: int
    out: Path


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="272x480 input instead of 1088x1920")
    parser.add_argument("--space", default="litedenoise")
    parser.add_argument("--n", type=int, default=30, help="test candidates (not used for calibration)")
    parser.add_argument("--calib", type=int, default=6, help="extra candidates that fit the calibration scale")
    parser.add_argument("--passes", type=int, help="interleaved timing passes, >= 2 (default 6 quick, 4 full)")
    parser.add_argument("--runs", type=int, default=2, help="timed invocations per model or probe per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "latency_accuracy.png")
    a = parser.parse_args(argv)
    height, width = (272, 480) if a.quick else (1088, 1920)
    passes = a.passes or (6 if a.quick else 4)
    return Settings(a.space, height, width, a.n, a.calib, max(passes, 2), a.runs, a.seed, a.threads, a.out)


def sample_arches(space_name: str, count: int, seed: int) -> list[Arch]:
    """`count` distinct random students of the space."""
    space, rng = load_space(space_name), random.Random(seed)
    arches: dict[Arch, None] = {}
    while len(arches) < count:
        arches[space.sample(lambda _n, choices: rng.choice(list(choices)))] = None
    return list(arches)


def export_all(arches: list[Arch], height: int, width: int, folder: Path) -> list[Path]:
    return [tflite.export_tflite(build_student(a), folder / f"m{i:03d}.tflite", (1, 3, height, width))
            for i, a in enumerate(arches)]


def agreement(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """Share within +-10%, mean absolute percentage error, Spearman rank correlation."""
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted), np.asarray(measured)
    errors = np.abs(p - m) / m
    return {"within10": float(np.mean(errors <= 0.10)), "mape": float(np.mean(errors) * 100),
            "spearman": float(spearmanr(p, m).statistic), "bias": float(np.median(m / p))}


def predict_cost_ms(table: latency.LatencyTable, arches: list[Arch], s: Settings) -> tuple[float, float]:
    """(first call incl. key decomposition, warm call) mean ms per prediction."""
    latency.arch_keys.cache_clear()
    start = time.perf_counter()
    for a in arches:
        table.predict(a, s.height, s.width)
    cold = (time.perf_counter() - start) * 1000 / len(arches)
    reps = 50
    start = time.perf_counter()
    for _ in range(reps):
        for a in arches:
            table.predict(a, s.height, s.width)
    return cold, (time.perf_counter() - start) * 1000 / (reps * len(arches))


def plot(predicted: list[float], measured: list[float], half_a: list[float], half_b: list[float], s: Settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    panels = [(axes[0], measured, predicted, "measured (median of passes) ms", "LUT prediction ms", "table"),
              (axes[1], half_a, half_b, "passes A (median) ms", "passes B (median) ms", "repeat vs repeat")]
    for ax, x, y, xlabel, ylabel, title in panels:
        lo, hi = min(min(x), min(y)) * 0.8, max(max(x), max(y)) * 1.2
        line = np.array([lo, hi])
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="+-10%")
        ax.plot(line, line, "k--", lw=0.8)
        ax.scatter(x, y, s=18)
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title, xlim=(lo, hi), ylim=(lo, hi))
        ax.legend(loc="upper left")
    fig.suptitle(f"{s.space} students at {s.height}x{s.width}, {tflite.runtime_version()}, {s.threads} thread(s)")
    fig.tight_layout()
    s.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(s.out, dpi=120)
    plt.close(fig)


def fmt(stats: dict[str, float]) -> str:
    return (f"within10={stats['within10']:.2f} mape={stats['mape']:.1f}% spearman={stats['spearman']:.3f} "
            f"bias(measured/predicted)={stats['bias']:.3f}")


def run_passes(paths: list[Path], keys: list[latency.OpKey], probe_dir: Path, s: Settings,
               device: latency.DeviceProfile) -> tuple[list[list[float]], list[float], list[latency.LutEntry], float]:
    """Interleaved passes; in each, every probe and every model is timed once, in one shuffled order.

    Shuffling probes and models together makes both see the same mix of quiet
    and busy moments of the shared machine. Returns per-model medians per
    pass, per-model wall time, the pooled LUT entries and the probe wall time.
    """
    probes = {key: lut_probes.write_probe(key, probe_dir) for key in keys}
    jobs: list[latency.OpKey | int] = [*keys, *range(len(paths))]
    per_pass: list[list[float]] = [[] for _ in paths]
    cost = [0.0] * len(paths)
    entries: list[latency.LutEntry] = []
    build_s, rng = 0.0, random.Random(s.seed + 1)
    for k in range(s.passes):
        rng.shuffle(jobs)
        for job in jobs:
            start = time.perf_counter()
            if isinstance(job, int):
                per_pass[job].append(tflite.time_tflite(paths[job], runs=s.runs, warmup=1, threads=s.threads).median_ms)
                cost[job] += time.perf_counter() - start
            else:
                entries.append(latency.time_probe(probes[job], job, device, runs=s.runs, warmup=1))
                build_s += time.perf_counter() - start
        print(f"  pass {k + 1}/{s.passes} done ({time.perf_counter() - START:.0f} s)", flush=True)
    return per_pass, cost, latency.combine_entries(entries), build_s


def main(argv: list[str] | None = None) -> None:
    s = parse_args(argv)
    device = latency.host_profile(s.threads)
    arches = sample_arches(s.space, s.n + s.calib, s.seed)
    test, calib = arches[: s.n], arches[s.n:]
    table = latency.LatencyTable(device)
    keys = sorted({key for a in arches for key, _ in table.keys(a, s.height, s.width)})
    print(f"latency_accuracy: {s.n} test + {s.calib} calibration students of '{s.space}' at {s.height}x{s.width}"
          f"{' (--quick: reduced from 1088x1920)' if (s.height, s.width) == (272, 480) else ''}; "
          f"{device}; {len(keys)} LUT keys; {s.passes} interleaved passes x {s.runs} runs", flush=True)
    with tempfile.TemporaryDirectory(prefix="latency-accuracy-") as folder:
        paths = export_all(arches, s.height, s.width, Path(folder))
        per_pass, cost, entries, build_s = run_passes(paths, keys, Path(folder) / "probes", s, device)
    table.add(entries)

    measured = [statistics.median(t) for t in per_pass]
    half_a = [statistics.median(t[0::2]) for t in per_pass]
    half_b = [statistics.median(t[1::2]) for t in per_pass]
    predicted = [table.predict(a, s.height, s.width) for a in arches]
    n = s.n
    plain = agreement(predicted[:n], measured[:n])
    scale = latency.fit_scale(measured[n:], predicted[n:]) if calib else 1.0
    calibrated = agreement([p * scale for p in predicted[:n]], measured[:n])
    repeat = agreement(half_b[:n], half_a[:n])
    cold_ms, warm_ms = predict_cost_ms(table, test, s)
    measure_ms = statistics.mean(cost[:n]) * 1000
    plot(predicted[:n], measured[:n], half_a[:n], half_b[:n], s)

    print(f"measured whole-model latency: median {statistics.median(measured[:n]):.1f} ms, "
          f"range {min(measured[:n]):.1f}-{max(measured[:n]):.1f} ms")
    print(f"table (plain sum):      {fmt(plain)}")
    print(f"table x {scale:.3f} (median ratio of {len(calib)} other students): {fmt(calibrated)}")
    print(f"repeat vs repeat (passes 1,3,.. vs 2,4,..): {fmt(repeat)}")
    print(f"cost: LUT build {build_s:.1f} s for {len(keys)} keys x {s.passes} passes "
          f"({build_s / len(keys) / s.passes * 1000:.0f} ms per key per pass); "
          f"prediction {warm_ms * 1000:.0f} us warm, "
          f"{cold_ms:.1f} ms with key decomposition; measuring one student {measure_ms:.0f} ms ({s.passes} passes)")
    print(f"scatter plot: {s.out}")
    print(f"latency_accuracy: n={n} within10={plain['within10']:.2f} mape={plain['mape']:.1f} "
          f"spearman={plain['spearman']:.3f} predict_ms={warm_ms:.4f} measure_ms={measure_ms:.0f}")


if __name__ == "__main__":
    main()
