"""A stand-in for `adb` in tests: no phone, the real ai-edge-litert interpreter on this machine.

It checks the adb runner's commands and its parsing of benchmark_model's
output, not a phone: `push LOCAL REMOTE` copies the file under
$ADB_STANDIN_ROOT, and `shell BENCHMARK --graph=REMOTE --num_threads=N
--num_runs=R --warmup_runs=W` times that file in the real interpreter and prints
the summary lines LiteRT's benchmark_model prints (microseconds). A model the
interpreter rejects prints its error and exits 1, as benchmark_model does.
Every call is appended to $ADB_STANDIN_ROOT/calls.log.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(os.environ["ADB_STANDIN_ROOT"])


def _on_device(remote: str) -> Path:
    return ROOT / remote.lstrip("/")


def _benchmark(arguments: list[str]) -> int:
    flags = dict(a[2:].split("=", 1) for a in arguments[1:] if a.startswith("--") and "=" in a)
    from nnsearch.errors import ExportError
    from nnsearch.latency.tflite import time_tflite

    try:
        timing = time_tflite(
            _on_device(flags["graph"]),
            runs=int(flags.get("num_runs", 50)),
            warmup=int(flags.get("warmup_runs", 1)),
            threads=int(flags.get("num_threads", 1)),
            clock="wall",
        )
    except ExportError as exc:
        print(f"ERROR: {exc}")
        print("Benchmarking failed.")
        return 1
    us = [s * 1e3 for s in timing.samples_ms]
    average = sum(us) / len(us)
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{flags['graph']}]")
    print(f"INFO: count=1 curr={us[0]:.0f}")
    print(
        f"INFO: count={len(us)} first={us[0]:.0f} curr={us[-1]:.0f} min={min(us):.0f} max={max(us):.0f} "
        f"avg={average:.1f} std={0:.0f}"
    )
    print(
        f"INFO: Inference timings in us: Init: 1000, First inference: {us[0]:.0f}, Warmup (avg): {us[0]:.0f}, "
        f"Inference (avg): {average:.1f}"
    )
    return 0


def main(argv: list[str]) -> int:
    ROOT.mkdir(parents=True, exist_ok=True)
    with (ROOT / "calls.log").open("a") as log:
        log.write(" ".join(argv) + "\n")
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    if argv[:1] == ["push"]:
        target = _on_device(argv[2])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(argv[1], target)
        print(f"{argv[1]}: 1 file pushed.")
        return 0
    if argv[:1] == ["shell"]:
        return _benchmark(argv[1:])
    print(f"adb stand-in: unsupported command {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
