"""A trained student at every precision: calibrated on training crops, written, checked, evaluated.

`StudentQuantizer` calibrates once per static recipe on `CALIBRATION_SAMPLES`
(default 8) seeded `CALIBRATION_CROP` px crops of the training images (the
student's real inputs, `nnsearch.train.crops.calibration_crops`), then writes
the student at any resolution and precision with those statistics
(`nnsearch.latency.quantize`). Quality is measured from the quantized
interpreter's output: the student is written at one square tile size (the
images' padded side, at most `EVAL_TILE`), quantized with the same calibration,
and run over each full-resolution image tile by tile
(`nnsearch.train.metrics.mean_quality_tiled`); fp32 goes through the same path, so
a drop against fp32 isolates the quantization.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from nnsearch.common.precision import Precision
from nnsearch.errors import DataError
from nnsearch.latency.quantize import (
    CALIBRATION_SAMPLES,
    Calibration,
    QuantizeError,
    TFLiteRunner,
    calibrate,
    quantize_tflite,
)
from nnsearch.latency.tflite import export_tflite
from nnsearch.train.crops import calibration_crops
from nnsearch.train.datasets import Pair
from nnsearch.train.metrics import mean_quality_tiled

#: Side of the calibration crops (a multiple of every student's downsampling factor).
CALIBRATION_CROP = 64
#: Largest tile of the quantized evaluation.
EVAL_TILE = 256
_MULTIPLE = 32


@dataclass(frozen=True)
class PrecisionQuality:
    """Full-resolution quality of one precision of a student, from its interpreter's output."""

    precision: Precision
    psnr: float
    ssim: float
    seconds: float


def eval_tile(pairs: Sequence[Pair], cap: int = EVAL_TILE) -> int:
    """The square tile the evaluation runs: the largest padded image side, at most `cap`."""
    side = max(max(p.noisy.shape[:2]) for p in pairs)
    return min(cap, -(-side // _MULTIPLE) * _MULTIPLE)


class StudentQuantizer:
    """One trained student's float and quantized .tflite files, sharing one calibration per recipe."""

    def __init__(
        self,
        net: nn.Module,
        name: str,
        calibration_pairs: Sequence[Pair],
        *,
        samples: int = CALIBRATION_SAMPLES,
        seed: int = 0,
        crop: int = CALIBRATION_CROP,
    ) -> None:
        self.net, self.name = net.cpu().eval(), name
        self.channels = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels
        self._dir = tempfile.TemporaryDirectory(prefix="nnsearch-quant-")
        self.folder = Path(self._dir.name)
        try:
            self._crops = calibration_crops(calibration_pairs, samples, crop, seed)
        except DataError as exc:
            self.close()
            raise QuantizeError(f"student {name}: calibration data: {exc}") from None
        self.crop = crop
        self._calibrations: dict[str, Calibration] = {}
        self._float: dict[tuple[int, int], Path] = {}

    def __enter__(self) -> StudentQuantizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._dir.cleanup()

    def float_file(self, height: int, width: int) -> Path:
        """The float32 .tflite of the student at height x width (written once, in the temp folder)."""
        if (height, width) not in self._float:
            path = self.folder / Precision.FP32.tflite_name(f"{self.name}.{height}x{width}")
            self._float[(height, width)] = export_tflite(self.net, path, (1, self.channels, height, width))
        return self._float[(height, width)]

    def calibration(self, precision: str) -> Calibration:
        """The recipe's tensor statistics over the calibration crops (computed once)."""
        if precision not in self._calibrations:
            source = self.float_file(self.crop, self.crop)
            samples = [{"x": crop} for crop in self._crops]
            self._calibrations[precision] = calibrate(source, precision, samples, f"student {self.name}")
        return self._calibrations[precision]

    def write(self, precision: str | Precision, path: str | Path, height: int, width: int) -> Path:
        """Write the student at height x width in `precision` to `path` (checked; atomic)."""
        if not Precision.parse(precision).quantized:
            return export_tflite(self.net, path, (1, self.channels, height, width))
        return quantize_tflite(
            self.float_file(height, width), path, precision, self.calibration(precision), f"student {self.name}"
        )

    def variant(self, precision: str, height: int, width: int) -> Path:
        """The `precision` file at height x width in the temp folder."""
        if not Precision.parse(precision).quantized:
            return self.float_file(height, width)
        path = self.folder / Precision.parse(precision).tflite_name(f"{self.name}.{height}x{width}")
        return path if path.exists() else self.write(precision, path, height, width)

    def quality(self, precision: str, pairs: Sequence[Pair], cap: int = EVAL_TILE) -> PrecisionQuality:
        """Mean PSNR / SSIM over `pairs` at full resolution from the `precision` interpreter's output."""
        began = time.perf_counter()
        tile = eval_tile(pairs, cap)
        runner = TFLiteRunner(self.variant(precision, tile, tile))
        scores = mean_quality_tiled(lambda patch: runner(patch[None])[0], pairs, tile=tile, fixed_tile=True)
        return PrecisionQuality(Precision.parse(precision), scores["psnr"], scores["ssim"], time.perf_counter() - began)
