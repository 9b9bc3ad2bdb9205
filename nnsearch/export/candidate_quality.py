"""The quantized-quality step of a study searched at a precision other than fp32.

Each trained candidate is quantized (`nnsearch.export.precisions.StudentQuantizer`,
calibrated on seeded crops of the study's training images) and its quality is
measured from the quantized interpreter's output on the validation pairs, so
the search selects students that survive quantization.
"""

from __future__ import annotations

import torch

from nnsearch.model.arch import Arch
from nnsearch.store.record import PrecisionRecord
from nnsearch.train.datasets import DenoiseData


class QuantizedQuality:
    """Quantizes candidates to `precision` and measures their quality (calibration: `samples` crops, `seed`)."""

    def __init__(self, precision: str, samples: int, seed: int) -> None:
        self.precision = precision
        self.samples = samples
        self.seed = seed

    def check_calibration(self, data: DenoiseData) -> None:
        """Fail before any training when calibration crops do not fit the training images."""
        from nnsearch.export.precisions import CALIBRATION_CROP
        from nnsearch.train.crops import calibration_crops

        calibration_crops(data.train, self.samples, CALIBRATION_CROP, self.seed)

    def quantizer(self, student: torch.nn.Module, arch: Arch, data: DenoiseData):  # -> StudentQuantizer
        """The student's quantizer, calibrated on seeded crops of the training images (a context manager)."""
        from nnsearch.export.precisions import StudentQuantizer

        return StudentQuantizer(student, arch.name, data.train, samples=self.samples, seed=self.seed)

    def quality(self, quantizer, data: DenoiseData) -> PrecisionRecord:  # quantizer: StudentQuantizer
        """Quality at the precision from the quantized interpreter's output (validation pairs, tiled)."""
        quality = quantizer.quality(self.precision, data.val)
        return PrecisionRecord(quality.precision, quality.psnr, quality.ssim, int(quality.seconds * 1e9))
