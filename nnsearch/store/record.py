"""What a write is made of: the record dataclasses and the store's fixed vocabulary (task, metric codes, stat fields).

Plain data, no SQL: `nnsearch.store.recording` writes these records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nnsearch.common.precision import Precision
from nnsearch.store.stat import LatencyStat

TASK = "img-denoising"

#: Code stored in the `metric` table for the metrics nnsearch records.
METRIC_CODE = {
    "psnr": "# PSNR on float images in [0, 1], no rounding: 10*log10(1/MSE); see nnsearch.train.metrics.psnr\n",
    "ssim": "# SSIM, 11x11 Gaussian window sigma 1.5, per channel, K1=0.01 K2=0.03; see nnsearch.train.metrics.ssim\n",
}


def precision_metric_code(metric: str, precision: str) -> str:
    """The `metric` table code of `Precision.parse(precision).metric(metric)`."""
    return (
        METRIC_CODE[metric].rstrip("\n") + f"; computed on the output of the {precision} .tflite file in "
        "ai-edge-litert (full resolution, tiled); see nnsearch.export.precisions\n"
    )


#: Columns that identify a stat row (its unique key).
STAT_KEY = ("task", "dataset", "metric", "nn", "epoch", "transform", "prm", "run", "rung")
#: Optional training diagnostics of a stat row (the `train_stat` table).
TRAIN_FIELDS = ("train_loss", "val_loss", "grad_norm", "samples_per_s", "cpu_mem_mb", "gpu_mem_mb")
NN_STAT_FIELDS = ("params", "macs", "macs_height", "macs_width", "depth", "model_size_bytes")


@dataclass
class EpochRecord:
    """Validation quality and training diagnostics after one epoch."""

    epoch: int
    psnr: float
    ssim: float
    duration_ns: int
    train_loss: float | None = None
    val_loss: float | None = None
    grad_norm: float | None = None
    samples_per_s: float | None = None
    cpu_mem_mb: float | None = None
    gpu_mem_mb: float | None = None


@dataclass(frozen=True)
class LatencyRecord(LatencyStat):
    """A latency figure (a `LatencyStat`) of a whole model on one device profile: a `latency_run` row."""

    device: str
    runtime: str
    runtime_version: str
    threads: int
    height: int
    width: int
    kind: str  # "measured" or "predicted"
    precision: str = Precision.FP32  # of the timed model: fp32, fp16, w8a16 or int8
    created_at: datetime | None = None  # when measured; None: when recorded


@dataclass
class PrecisionRecord:
    """Full-resolution quality of a quantized variant after the last epoch (stat rows 'psnr@P', 'ssim@P')."""

    precision: str
    psnr: float
    ssim: float
    duration_ns: int = 0


@dataclass
class ModelRecord:
    """Everything nnsearch keeps about one trained candidate."""

    nn: str
    code: str
    arch_json: str
    prm: dict[str, Any]
    dataset: str
    transform: str
    transform_code: str
    params: int
    macs: float
    macs_hw: tuple[int, int]
    depth: int
    model_size_bytes: int
    epochs: list[EpochRecord] = field(default_factory=list)
    latencies: list[LatencyRecord] = field(default_factory=list)
    weights: bytes | None = None
    task: str = TASK
    precisions: list[PrecisionRecord] = field(default_factory=list)
    rung: int = 0  # the multi-fidelity rung these epochs belong to (0: the first, or single-fidelity)


@dataclass
class Bundle:
    """Rows for one all-or-nothing write.

    `stats`: mappings with the `STAT_KEY` columns (`run` and `rung` may be left out: 0),
    `accuracy` and `duration` (nanoseconds, or None when unknown), where `prm`
    is the hyperparameter dict; an optional `prm_uid` overrides the
    computed uid (imports keep the NN Dataset's own), and an optional `train`
    mapping of `TRAIN_FIELDS` adds a `train_stat` row. `prm_sets` (uid -> dict)
    adds hyperparameter sets that no stat names.
    The code maps (name -> source) add the `nn`, `metric` and `transform` rows the
    stats refer to; `nn_arch` (name -> Arch JSON), `nn_stats` (name -> the
    `NN_STAT_FIELDS`) and `latencies` (mappings of `latency_run` columns with
    `nn`) add model facts. Rows that already exist are kept as they are, except
    that a stored model with empty code or without an architecture gets the
    code or architecture the bundle gives.
    """

    stats: list[dict[str, Any]] = field(default_factory=list)
    nn_code: Mapping[str, str] = field(default_factory=dict)
    metric_code: Mapping[str, str] = field(default_factory=dict)
    transform_code: Mapping[str, str] = field(default_factory=dict)
    nn_arch: Mapping[str, str | None] = field(default_factory=dict)
    nn_stats: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    latencies: list[dict[str, Any]] = field(default_factory=list)
    prm_sets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
