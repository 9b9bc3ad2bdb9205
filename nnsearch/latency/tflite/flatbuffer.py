"""`Graph` -> TFLite flatbuffer (the object API ai-edge-litert ships), written atomically after an op check."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nnsearch.errors import ExportError
from nnsearch.latency.tflite.graph import Graph, Layer, Shape
from nnsearch.latency.tflite.graph import schema as _schema
from nnsearch.latency.tflite.interpreter import check_native_ops
from nnsearch.latency.tflite.lowering import lower

#: The SignatureDef every written file has (the quantizer's calibration needs one) and its output's name.
SIGNATURE_KEY = "serving_default"
SIGNATURE_OUTPUT = "output"


def _conv_arrays(layer: Layer, in_c: int, out_c: int) -> tuple[np.ndarray, np.ndarray]:
    """OHWI weights and bias of a CONV_2D layer (seeded random when it has no module)."""
    if layer.module is None:
        rng = np.random.default_rng(out_c * 1000 + in_c)
        scale = 1.0 / np.sqrt(layer.kernel * layer.kernel * in_c)
        weight = rng.uniform(-scale, scale, (out_c, layer.kernel, layer.kernel, in_c)).astype(np.float32)
        return weight, np.zeros(out_c, np.float32)
    conv = layer.module
    assert isinstance(conv, nn.Conv2d)
    weight = conv.weight.detach().cpu().float().permute(0, 2, 3, 1).contiguous().numpy()
    bias = conv.bias.detach().cpu().float().numpy() if conv.bias is not None else np.zeros(out_c, np.float32)
    return weight, bias


class _FlatModel:
    """Accumulates tensors, buffers and operator codes of one subgraph."""

    def __init__(self) -> None:
        self.schema = _schema()
        self.tensors: list[Any] = []
        self.index: dict[str, int] = {}
        self.buffers = [self.schema.BufferT()]  # buffer 0: the empty sentinel
        self.codes: dict[str, int] = {}
        self.operators: list[Any] = []

    def tensor(self, name: str, shape: Sequence[int], data: np.ndarray | None = None) -> int:
        t = self.schema.TensorT()
        t.name, t.shape = name, list(shape)
        types = self.schema.TensorType
        t.type = types.INT32 if data is not None and data.dtype == np.int32 else types.FLOAT32
        t.buffer = 0
        if data is not None:
            buf = self.schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def opcode(self, op: str) -> int:
        return self.codes.setdefault(op, len(self.codes))

    def add_operator(self, op: str, inputs: list[int], output: int, options: tuple[str, Any] | None) -> None:
        o = self.schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcode(op), inputs, [output]
        if options is not None:
            o.builtinOptionsType = getattr(self.schema.BuiltinOptions, options[0])
            o.builtinOptions = options[1]
        self.operators.append(o)

    def finish(self, inputs: list[str], output: str, description: str) -> bytes:
        import flatbuffers

        schema = self.schema
        sub = schema.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, "main"
        sub.inputs, sub.outputs = [self.index[n] for n in inputs], [self.index[output]]
        model = schema.ModelT()
        model.version, model.description = 3, description
        model.subgraphs, model.buffers = [sub], self.buffers
        model.operatorCodes = [self._code(op) for op in self.codes]  # dicts keep insertion order
        model.signatureDefs = [self._signature(inputs, output)]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _signature(self, inputs: list[str], output: str) -> Any:
        """The `serving_default` SignatureDef: each graph input and the output under its tensor name."""
        signature = self.schema.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = SIGNATURE_KEY, 0
        signature.inputs = [self._tensor_map(name, self.index[name]) for name in inputs]
        signature.outputs = [self._tensor_map(SIGNATURE_OUTPUT, self.index[output])]
        return signature

    def _tensor_map(self, name: str, index: int) -> Any:
        entry = self.schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    def _code(self, op: str) -> Any:
        code = self.schema.OperatorCodeT()
        code.builtinCode = getattr(self.schema.BuiltinOperator, op)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = 1
        return code


_ACTIVATION = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


def _options(schema: Any, layer: Layer) -> tuple[str, Any] | None:
    """The builtin options object of one layer."""
    act = _ACTIVATION[layer.activation]
    padding = getattr(schema.Padding, layer.padding)
    if layer.op == "CONV_2D":
        o = schema.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.fusedActivationFunction = padding, layer.stride, layer.stride, act
        o.dilationHFactor = o.dilationWFactor = 1
        return "Conv2DOptions", o
    if layer.op == "MAX_POOL_2D":
        o = schema.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW = padding, layer.stride, layer.stride
        o.filterHeight = o.filterWidth = layer.kernel
        o.fusedActivationFunction = act
        return "Pool2DOptions", o
    if layer.op == "RESIZE_NEAREST_NEIGHBOR":
        o = schema.ResizeNearestNeighborOptionsT()
        o.alignCorners = o.halfPixelCenters = False
        return "ResizeNearestNeighborOptions", o
    if layer.op == "CONCATENATION":
        o = schema.ConcatenationOptionsT()
        o.axis, o.fusedActivationFunction = 3, act
        return "ConcatenationOptions", o
    if layer.op == "ADD":
        o = schema.AddOptionsT()
        o.fusedActivationFunction = act
        return "AddOptions", o
    if layer.op == "PAD":
        return "PadOptions", schema.PadOptionsT()
    return None


def _constant_inputs(flat: _FlatModel, layer: Layer, shapes: dict[str, Shape]) -> list[int]:
    """Create the constant operand tensors (weights, paddings, sizes) a layer needs."""
    in_shape, out_shape = shapes[layer.inputs[0]], shapes[layer.output]
    if layer.op == "CONV_2D":
        weight, bias = _conv_arrays(layer, in_shape[3], out_shape[3])
        return [
            flat.tensor(f"{layer.output}/weight", weight.shape, weight),
            flat.tensor(f"{layer.output}/bias", bias.shape, bias),
        ]
    if layer.op == "PAD":
        p = layer.pad
        return [flat.tensor(f"{layer.output}/paddings", (4, 2), np.array([[0, 0], [p, p], [p, p], [0, 0]], np.int32))]
    if layer.op == "RESIZE_NEAREST_NEIGHBOR":
        return [flat.tensor(f"{layer.output}/size", (2,), np.array(out_shape[1:3], np.int32))]
    return []


def to_flatbuffer(graph: Graph, description: str = "nnsearch") -> bytes:
    """Serialise a lowered graph as a TFLite flatbuffer."""
    flat = _FlatModel()
    for name in graph.inputs:
        flat.tensor(name, graph.shapes[name])
    for layer in graph.layers:
        inputs = [flat.index[name] for name in layer.inputs] + _constant_inputs(flat, layer, graph.shapes)
        output = flat.tensor(layer.output, graph.shapes[layer.output])
        flat.add_operator(layer.op, inputs, output, _options(flat.schema, layer))
    return flat.finish(graph.inputs, graph.output, description)


def write_atomic(data: bytes, path: str | Path) -> Path:
    """Write a .tflite file via a temp file + rename, after checking its op set."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        check_native_ops(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export_tflite(
    model: nn.Module, path: str | Path, input_shape: tuple[int, int, int, int] = (1, 3, 256, 256)
) -> Path:
    """Write `model` as a float32 NHWC .tflite file made of NATIVE_OPS only; returns the path."""
    graph = lower(model, input_shape)
    return write_atomic(to_flatbuffer(graph, f"nnsearch {type(model).__name__}"), path)
