"""The numeric precision of a model: its name, its metric names and its file names, in one type.

A study searched, a lookup table measured or a file exported at a precision
other than fp32 records its quality as `<metric>@<precision>` (`psnr@int8`;
fp32 keeps the plain `psnr`) and writes `<stem>.<precision>.tflite`
(`<stem>.tflite` for fp32). Every stage names precisions through `Precision`.
"""

from __future__ import annotations

import enum
import sys

from nnsearch.errors import NNSearchError

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: the same behaviour for what nnsearch uses (str() and format() give the value)

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str(self.value)


class PrecisionError(NNSearchError):
    """An unknown precision name."""


class Precision(StrEnum):
    """A precision a student is timed, quantized or evaluated at (a `str`: `Precision.INT8 == "int8"`)."""

    FP32 = "fp32"
    FP16 = "fp16"
    W8A16 = "w8a16"
    INT8 = "int8"

    @classmethod
    def parse(cls, value: str | Precision, what: str = "precision") -> Precision:
        """The precision named `value`; PrecisionError naming `what` and the known names otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise PrecisionError(f"unknown {what} {value!r}; expected one of {', '.join(NAMES)}") from None

    @property
    def quantized(self) -> bool:
        """True for every precision but fp32 (those are written by quantizing the float file)."""
        return self is not Precision.FP32

    @property
    def recipe(self) -> str:
        """What the precision means (model cards, --help)."""
        return _RECIPES[self]

    @property
    def tag(self) -> str:
        """'' for fp32, else '@<name>': the suffix of metric and column names."""
        return "" if self is Precision.FP32 else f"@{self.value}"

    @property
    def file_suffix(self) -> str:
        """'' for fp32, else '.<name>': what a file name carries before `.tflite`."""
        return "" if self is Precision.FP32 else f".{self.value}"

    def metric(self, name: str) -> str:
        """The stat metric name of quality figure `name` at this precision: 'psnr' for fp32, else 'psnr@int8'."""
        return f"{name}{self.tag}"

    def tflite_name(self, stem: str) -> str:
        """`<stem>.tflite` for fp32, else `<stem>.<name>.tflite`."""
        return f"{stem}{self.file_suffix}.tflite"

    def label(self, prefix: str = " ") -> str:
        """'' for fp32, else `prefix` + name: for messages that mention only a non-default precision."""
        return "" if self is Precision.FP32 else f"{prefix}{self.value}"


_RECIPES = {
    Precision.FP32: "float32 weights and activations (no quantization)",
    Precision.FP16: "float16 weights (float_casting), float32 activations",
    Precision.W8A16: "static_wi8_ai16: int8 weights, int16 activations",
    Precision.INT8: "static_wi8_ai8: int8 weights, int8 activations",
}

#: Default number of calibration samples (seeded training crops) per quantized student.
CALIBRATION_SAMPLES = 8
#: Every precision, fp32 first.
PRECISIONS: tuple[Precision, ...] = tuple(Precision)
#: Their names, for messages and --help.
NAMES: tuple[str, ...] = tuple(p.value for p in Precision)
#: The precisions written by quantizing a float32 file.
QUANTIZED: tuple[Precision, ...] = (Precision.INT8, Precision.W8A16, Precision.FP16)
