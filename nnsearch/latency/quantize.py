"""Quantized .tflite variants with Google's LiteRT quantizer (`litert-quantizer`), and running them.

Precisions (the names the store, the lookup tables and the CLI use):

- `fp32`: the file `nnsearch.latency.tflite` writes (no quantization);
- `int8`: recipe `static_wi8_ai8`: int8 weights (per channel) and int8
  activations, input and output int8;
- `w8a16`: recipe `static_wi8_ai16`: int8 weights and int16 activations,
  input and output int16;
- `fp16`: float16 weights (the quantizer's `float_casting` weight-only
  algorithm on CONV_2D), DEQUANTIZE to float32 before each conv; input,
  output and arithmetic stay float32.

The static recipes need calibration: the float model (which carries the
`serving_default` SignatureDef the writer adds) is run on sample inputs and
the minimum and maximum of every tensor are recorded (`calibrate`), scaled by
a headroom factor (`HEADROOM`: 2 for int8, 4 for w8a16), and the image
tensors, input and output, are widened to cover [0, 1]. Those
statistics are keyed by tensor name, and the writer names tensors after the
torch graph, so one calibration (on small crops) quantizes the same student
written at any resolution (`quantize_tflite`). Every quantized file is checked
like the float one: only NPU-native ops plus QUANTIZE / DEQUANTIZE, and it
must load and run in the interpreter; it is written atomically, so a failure
leaves nothing behind. `TFLiteRunner` runs any precision on float inputs,
quantizing the input and dequantizing the output with the file's scale and
zero point.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.common.precision import CALIBRATION_SAMPLES, QUANTIZED, Precision  # noqa: F401 - importable from here
from nnsearch.errors import ExportError
from nnsearch.latency.tflite import NATIVE_OPS, make_interpreter, read_op_names
from nnsearch.latency.tflite.flatbuffer import SIGNATURE_KEY

#: Ops a quantized file may hold: the native set plus the quantizer's conversions.
QUANTIZED_OPS: frozenset[str] = NATIVE_OPS | {"QUANTIZE", "DEQUANTIZE"}
#: Factor on the calibrated activation ranges (see `calibrate`). A few 64 px crops do not show the largest
#: activations a full image can reach, and a clipped activation costs far more than a coarser step: on
#: briefly trained litedenoise students evaluated on other images than the crops', the observed ranges
#: lost up to 2.2 dB (int8) / 1.9 dB (w8a16) where x2 lost <= 0.02 / 0.00 dB. int16 has bits to spare.
HEADROOM: dict[Precision, float] = {Precision.INT8: 2.0, Precision.W8A16: 4.0}

Calibration = Mapping[str, Any]  # tensor name -> min/max statistics (the quantizer's QSVs); {} for fp16
Sample = Mapping[str, np.ndarray]  # signature input name -> NHWC float32 array


class QuantizeError(ExportError):
    """A student cannot be quantized: bad calibration data or a quantizer failure (names student and step)."""


def _quantizer(path: Path, precision: Precision) -> Any:
    """A litert_quantizer.Quantizer for `path` loaded with the precision's recipe."""
    from litert_quantizer import qtyping, quantizer, recipe
    from litert_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(str(path))
    if precision is Precision.INT8:
        q.load_quantization_recipe(recipe.static_wi8_ai8())
    elif precision is Precision.W8A16:
        q.load_quantization_recipe(recipe.static_wi8_ai16())
    else:
        q.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.CONV_2D,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
    return q


def _quiet() -> contextlib.ExitStack:
    """Swallow the quantizer's progress bars and reports (it prints to stdout and stderr)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def _check_samples(path: Path, samples: Sequence[Sample], what: str) -> None:
    """QuantizeError unless every sample gives each input of `path` an array of its shape."""
    if not samples:
        raise QuantizeError(f"{what}: calibration needs at least one sample, got none")
    interpreter = make_interpreter(path)
    wanted = {d["name"]: tuple(int(v) for v in d["shape"]) for d in interpreter.get_input_details()}
    for index, sample in enumerate(samples):
        if set(sample) != set(wanted):
            raise QuantizeError(
                f"{what}: calibration sample {index} names inputs {sorted(sample)}, the model takes {sorted(wanted)}"
            )
        for name, array in sample.items():
            if tuple(np.shape(array)) != wanted[name]:
                raise QuantizeError(
                    f"{what}: calibration sample {index} has shape {tuple(np.shape(array))} for "
                    f"input '{name}', which does not fit the model's NHWC input {wanted[name]}"
                )


def calibrate(
    float_path: str | Path,
    precision: str | Precision,
    samples: Sequence[Sample],
    what: str = "model",
    headroom: float | None = None,
) -> Calibration:
    """Tensor statistics of a float .tflite file over `samples` for `precision` ({} where none are needed).

    `headroom` (default `HEADROOM[precision]`) scales every tensor's observed
    range, so inputs busier than the calibration samples are not clipped.
    """
    precision = Precision.parse(precision)
    path = Path(float_path)
    if precision in (Precision.FP32, Precision.FP16):
        return {}
    _check_samples(path, samples, what)
    batch = [{name: np.asarray(a, np.float32) for name, a in s.items()} for s in samples]
    try:
        with _quiet():
            statistics = _quantizer(path, precision).calibrate({SIGNATURE_KEY: batch}, num_threads=1)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises anything
        raise QuantizeError(f"{what}: calibrating for {precision} failed: {type(exc).__name__}: {exc}") from None
    _widen(statistics, HEADROOM.get(precision, 1.0) if headroom is None else headroom)
    return _cover_image_range(statistics, image_range_tensors(path))


def _widen(statistics: dict[str, Any], factor: float) -> None:
    """Scale each tensor's min and max by `factor` (a zero bound stays zero)."""
    if factor == 1.0:
        return
    for qsv in statistics.values():
        if qsv and "min" in qsv and "max" in qsv:
            qsv["min"] = (np.asarray(qsv["min"]) * factor).astype(np.float32)
            qsv["max"] = (np.asarray(qsv["max"]) * factor).astype(np.float32)


def image_range_tensors(path: str | Path) -> list[str]:
    """Names of the tensors that hold images: the graph inputs, the output and the input of a final clamp."""
    from nnsearch.latency.tflite.graph import schema as _schema

    schema = _schema()
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    sub = model.Subgraphs(0)
    name = lambda i: sub.Tensors(i).Name().decode()  # noqa: E731
    output = sub.Outputs(0)
    names = [name(sub.Inputs(i)) for i in range(sub.InputsLength())] + [name(output)]
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if op.Outputs(0) == output and builtin == schema.BuiltinOperator.RELU_N1_TO_1:
            names.append(name(op.Inputs(0)))
    return names


def _cover_image_range(statistics: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Widen the min/max of image tensors to at least [0, 1].

    Images are in [0, 1] whatever the calibration crops held; without this, a
    brighter test image than any crop would be clipped at the integer input
    (and a brighter output at the output) of the quantized file.
    """
    for name in names:
        qsv = statistics.get(name)
        if qsv and "min" in qsv and "max" in qsv:
            qsv["min"] = np.minimum(qsv["min"], 0.0).astype(np.float32)
            qsv["max"] = np.maximum(qsv["max"], 1.0).astype(np.float32)
    return statistics


def quantize_tflite(
    float_path: str | Path,
    out_path: str | Path,
    precision: str | Precision,
    calibration: Calibration,
    what: str = "model",
) -> Path:
    """Write the `precision` variant of a float .tflite file to `out_path`, checked; returns the path.

    `calibration` comes from `calibrate` (of this file or of the same student at
    another resolution). The file is checked for QUANTIZED_OPS and run once in
    the interpreter before it is moved into place.
    """
    precision = Precision.parse(precision)
    if not precision.quantized:
        raise QuantizeError(f"{what}: {precision} is the float file itself; quantize to one of {', '.join(QUANTIZED)}")
    source, out = Path(float_path), Path(out_path)
    try:
        with _quiet():
            result = _quantizer(source, precision).quantize(calibration or None, enable_progress_report=False)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises anything
        raise QuantizeError(f"{what}: quantizing to {precision} failed: {type(exc).__name__}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(result.quantized_model))
        check_quantized(tmp, what=f"{what} ({precision})")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def check_quantized(path: str | Path, what: str = "model") -> list[str]:
    """The op names of a quantized file; QuantizeError if an op is outside QUANTIZED_OPS or it does not run."""
    names = read_op_names(path)
    foreign = sorted(set(names) - QUANTIZED_OPS)
    if foreign:
        raise QuantizeError(f"{what}: the quantized file holds op(s) {foreign} outside {sorted(QUANTIZED_OPS)}")
    runner = TFLiteRunner(path)
    try:
        runner.run_all({d.name: np.zeros(d.shape, np.float32) for d in runner.inputs})
    except (ValueError, RuntimeError) as exc:
        raise QuantizeError(f"{what}: the quantized file does not run in the interpreter: {exc}") from None
    return names


@dataclass(frozen=True)
class TensorIO:
    """One input or output of a .tflite file: name, NHWC shape, dtype name, scale and zero point."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def describe(self) -> str:
        if self.scale:
            return f"{self.dtype} (scale {self.scale:.6g}, zero point {self.zero_point})"
        return self.dtype

    def to_tensor(self, x: np.ndarray) -> np.ndarray:
        """A float array in this tensor's dtype (quantized with its scale and zero point)."""
        dtype = np.dtype(self.dtype)
        if not self.scale or dtype.kind == "f":
            return np.ascontiguousarray(x, dtype)
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))

    def to_float(self, x: np.ndarray) -> np.ndarray:
        """A tensor's value as float32 (dequantized where it is an integer tensor)."""
        if not self.scale or np.asarray(x).dtype.kind == "f":
            return np.asarray(x, np.float32)
        return ((np.asarray(x, np.float64) - self.zero_point) * self.scale).astype(np.float32)


def _tensor_io(detail: Mapping[str, Any]) -> TensorIO:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorIO(
        str(detail["name"]),
        int(detail["index"]),
        tuple(int(v) for v in detail["shape"]),
        np.dtype(detail["dtype"]).name,
        float(scale),
        int(zero_point),
    )


class TFLiteRunner:
    """A loaded .tflite file of any precision, run on float32 NHWC inputs, giving float32 outputs."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.interpreter = make_interpreter(path, threads)
        self.inputs = [_tensor_io(d) for d in self.interpreter.get_input_details()]
        self.outputs = [_tensor_io(d) for d in self.interpreter.get_output_details()]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        for tensor in self.inputs:
            self.interpreter.set_tensor(tensor.index, tensor.to_tensor(feeds[tensor.name]))
        self.interpreter.invoke()
        return [t.to_float(self.interpreter.get_tensor(t.index)) for t in self.outputs]

    def __call__(self, nhwc: np.ndarray) -> np.ndarray:
        """Output of a single-input model for one 1xHxWxC float array (H, W as the file declares)."""
        (tensor,) = self.inputs
        if tuple(nhwc.shape) != tensor.shape:
            raise ExportError(f"{self.path} takes NHWC {tensor.shape}; got {tuple(nhwc.shape)}")
        return self.run_all({tensor.name: nhwc})[0]


def random_samples(path: str | Path, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded uniform [0, 1) inputs for every input of a file (calibrating one-op latency probes)."""
    rng = np.random.default_rng(seed)
    inputs = [_tensor_io(d) for d in make_interpreter(path).get_input_details()]
    return [{t.name: rng.random(t.shape, dtype=np.float32) for t in inputs} for _ in range(count)]


def quantize_with_random_calibration(
    float_path: str | Path,
    out_path: str | Path,
    precision: str,
    what: str = "probe",
    calibration_path: str | Path | None = None,
) -> Path:
    """Quantize a file calibrated on seeded uniform inputs: how lookup-table probes get their precision.

    A probe's latency depends on its shapes and dtypes, not on the values, so
    random [0, 1) inputs (the range of images) calibrate it as well as data would.
    `calibration_path`: the same graph at a smaller size (same tensor names) to calibrate on instead.
    """
    source = calibration_path or float_path
    calibration = calibrate(source, precision, random_samples(source), what)
    return quantize_tflite(float_path, out_path, precision, calibration, what)
