"""Does memory stay bounded as the dataset grows, and do loader workers keep up?

Generates two folders of large synthetic noisy/clean pairs (full: 8 and 32 pairs of 3000x4000;
--quick: 4 and 16 pairs of 1200x1600) in a temporary folder, then distills the same student
(the fastest of the tiny space, no teacher, crops 64 -> 128, batch 8) for the same steps from each,
every run in its own subprocess so that its peak resident memory (ru_maxrss) is its own:

  rss_ratio      peak RSS on the large folder / on the small one (in memory, float32, the large
                 folder would need 4x the pixels: 32 x 3000 x 4000 x 3 x 4 B x 2 = 9.2 GB);
  load_s_*       `load_data` time (header checks and file digests; digests are computed once);
  samples_per_s  training throughput on the large folder with loader workers off (inline) and on
                 (the default count for this machine), measured one after the other with the
                 decoded-pair cache already warm;
  noise_ms_512   synthesising camera noise for one 512x512 clean image (`add_camera_noise`, the
                 minimum of 5 runs; built-in and clean-folder data pay it for every crop's image).

    python benchmarks/data_scale.py --quick
    python benchmarks/data_scale.py

The last line reads `data_scale: rss_ratio=... load_s_small=... load_s_large=...
samples_per_s_inline=... samples_per_s_workers=... noise_ms_512=...`. Figures: docs/benchmarks/data_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_pairs(folder: Path, count: int, height: int, width: int) -> None:
    """`count` smooth synthetic scenes (clean) with Gaussian noise (noisy), as 8-bit PNGs."""
    from PIL import Image

    for role in ("noisy", "clean"):
        (folder / role).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        rng = np.random.default_rng(index)
        phases = rng.uniform(0, 2 * np.pi, 3)
        scale = rng.uniform(40, 200)
        clean = np.stack([0.5 + 0.4 * np.sin(xx / scale + p) * np.cos(yy / (scale * 1.3) - p) for p in phases], 2)
        noisy = clean + rng.normal(0.0, 0.05, clean.shape).astype(np.float32)
        for role, image in (("clean", clean), ("noisy", noisy)):
            pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
            Image.fromarray(pixels).save(folder / role / f"scene{index:03d}.png", compress_level=1)


def run_one(folder: str, steps: int, workers: int) -> None:
    """One training run (in a subprocess); prints its figures as JSON."""
    import torch

    from nnsearch.model.space import load_space
    from nnsearch.model.student import build_student
    from nnsearch.train.datasets import load_data
    from nnsearch.train.distill import DistillConfig, TeacherTargets, distill

    began = time.perf_counter()
    data = load_data(folder)
    load_s = time.perf_counter() - began
    config = DistillConfig(steps=steps, epochs=1, batch=8, crops=(64, 128), alpha=0.0, loader_workers=workers)
    arch = load_space("tiny").fastest_candidates()[0]
    torch.manual_seed(0)
    targets = TeacherTargets.build(None, data, config, multiple=arch.min_divisor)
    # validation on full 12 MP images measures the model, not the loader: validate on one pair
    result = distill(build_student(arch), targets, data.val[:1], config)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "load_s": load_s,
                "peak_mb": peak_mb,
                "samples_per_s": result.final.samples_per_s,
                "pairs": len(data.train) + len(data.val),
            }
        )
    )


def measure(folder: Path, steps: int, workers: int, env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--run", str(folder), "--steps", str(steps), "--workers", str(workers)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"run on {folder} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 and 16 pairs of 1200x1600")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run, args.steps, args.workers)
        return
    from nnsearch.train.prefetch import default_loader_workers

    small, large, (height, width), steps = (4, 16, (1200, 1600), 60) if args.quick else (8, 32, (3000, 4000), 200)
    workers = default_loader_workers()
    with tempfile.TemporaryDirectory(prefix="nnsearch-data-scale-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "NNSEARCH_CACHE": str(root / "cache"), "PYTHONPATH": str(ROOT)}
        began = time.perf_counter()
        make_pairs(root / "large", large, height, width)
        for role in ("noisy", "clean"):  # the small folder holds the first pairs of the large one
            (root / "small" / role).mkdir(parents=True)
            for path in sorted((root / "large" / role).iterdir())[:small]:
                (root / "small" / role / path.name).symlink_to(path)
        print(f"generated {large} pairs of {width}x{height} in {time.perf_counter() - began:.0f} s", flush=True)
        runs = {}
        for name, folder in (("small", root / "small"), ("large", root / "large")):
            runs[name] = measure(folder, steps, 0, env)
            print(f"{name}: {runs[name]}", flush=True)
        runs["inline"] = measure(root / "large", steps, 0, env)  # decoded-pair cache warm from here on
        runs["workers"] = measure(root / "large", steps, workers, env)
        print(f"inline: {runs['inline']}\nworkers ({workers}): {runs['workers']}", flush=True)
    ratio = runs["large"]["peak_mb"] / runs["small"]["peak_mb"]
    inline, parallel = runs["inline"]["samples_per_s"], runs["workers"]["samples_per_s"]
    print(
        f"peak RSS {runs['small']['peak_mb']:.0f} MB ({small} pairs) vs {runs['large']['peak_mb']:.0f} MB "
        f"({large} pairs): {'ok' if ratio <= 1.3 else 'FAIL'} (<= 1.3); loader workers "
        f"{'ok' if parallel >= 0.9 * inline else 'SLOWER'} ({parallel / inline:.2f}x inline, {os.cpu_count()} cores)"
    )
    print(
        f"data_scale: rss_ratio={ratio:.3f} load_s_small={runs['small']['load_s']:.2f} "
        f"load_s_large={runs['large']['load_s']:.2f} samples_per_s_inline={inline:.1f} "
        f"samples_per_s_workers={parallel:.1f} noise_ms_512={noise_ms(512):.1f}"
    )


def noise_ms(side: int, runs: int = 5) -> float:
    """Milliseconds `add_camera_noise` takes for one side x side clean image (the minimum of `runs`)."""
    import numpy as np

    from nnsearch.train.datasets import add_camera_noise

    rng = np.random.default_rng(0)
    clean = rng.random((side, side, 3), dtype=np.float32)
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        add_camera_noise(clean, rng)
        timings.append(time.perf_counter() - began)
    return 1000 * min(timings)


if __name__ == "__main__":
    main()
