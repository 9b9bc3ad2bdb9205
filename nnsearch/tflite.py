"""Torch -> TFLite writer for the NPU-native op set, and interpreter helpers.

`export_tflite` traces a module with torch.fx, lowers every node to a small
layer list (`Graph`, NHWC shapes computed analytically, so nothing runs at full
resolution) and writes a float32 flatbuffer with the object API that
ai-edge-litert ships (`schema_py_generated`). The same `Graph` is what
`nnsearch.latency` decomposes into lookup-table keys.

Lowering choices:

- Conv2d 3x3 (groups 1, dilation 1) -> CONV_2D, weights OHWI. Stride 1 with
  padding 1 is SAME; stride 2 with padding 1 becomes PAD(1,1,1,1) + VALID
  conv, because TFLite SAME pads (0, 1) on even inputs while torch pads (1, 1).
- A ReLU is fused into the CONV_2D or ADD that feeds it when it is that op's
  only consumer; otherwise it stays a RELU op.
- nearest x2 Upsample -> RESIZE_NEAREST_NEIGHBOR (align_corners=False,
  half_pixel_centers=False, which is torch's 'nearest' rule); torch.cat on
  channels -> CONCATENATION(axis=3); `+` -> ADD; MaxPool2d -> MAX_POOL_2D.
- torch.clamp(x, 0, 1) -> RELU (fused into the producing CONV_2D/ADD when
  possible) followed by RELU_N1_TO_1, since min(max(x, 0), 1) =
  relu_n1_to_1(relu(x)). RELU and RELU_N1_TO_1 are among the oldest TFLite
  builtins (NNAPI RELU / RELU1), taken by XNNPACK and by vendor NPU delegates;
  RELU_0_TO_1 (builtin 152, added in TFLite 2.14) runs in ai-edge-litert 2.3.0
  too but is missing from NNAPI and older NPU delegates, and MINIMUM/MAXIMUM
  would need broadcast constant operands. So the student's global residual and
  clamp lower to ADD(fused RELU) + RELU_N1_TO_1 (without the global residual,
  to CONV_2D(fused RELU) + RELU_N1_TO_1).

Timing uses ai_edge_litert's Interpreter, which applies XNNPACK by default
(RESIZE_NEAREST_NEIGHBOR stays on the builtin kernel). With one thread it reads
the invoking thread's CPU time, so other processes on a shared machine do not
inflate the figure by descheduling it (`resolve_clock`).
"""

from __future__ import annotations

import operator
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from nnsearch.errors import ExportError

NATIVE_OPS: frozenset[str] = frozenset({
    "CONV_2D", "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION", "ADD", "MAX_POOL_2D",
    "PAD", "RELU", "RELU_N1_TO_1",
})

#: The torch operations the exporter accepts, as named in error messages.
ALLOWED_TORCH_OPS = (
    "Conv2d 3x3 (stride 1 or 2, padding 0/1, groups 1, dilation 1), ReLU, "
    "Upsample(mode='nearest', integer scale), MaxPool2d (kernel = stride, no padding), "
    "Identity, torch.cat(dim=1), tensor + tensor, torch.clamp(x, 0, 1), torch.relu"
)

RUNTIME = "tflite-cpu"
"""ai-edge-litert Interpreter, default op resolver (XNNPACK delegate)."""

Shape = tuple[int, int, int, int]  # NHWC


@dataclass
class Layer:
    """One TFLite operator of a lowered graph.

    `kernel` is the conv/pool window (0 for other ops), `stride` the conv/pool
    stride or the resize factor, `pad` the per-side PAD amount. `module` holds
    the torch conv whose weights CONV_2D writes (None: random weights).
    """

    op: str
    inputs: list[str]
    output: str
    path: str = ""
    activation: str = "NONE"
    kernel: int = 0
    stride: int = 1
    padding: str = "VALID"
    pad: int = 0
    module: nn.Module | None = None


@dataclass
class Graph:
    """A lowered model: layers in execution order and the NHWC shape of every value."""

    layers: list[Layer]
    shapes: dict[str, Shape]
    inputs: list[str]
    output: str

    def op_names(self) -> list[str]:
        return [layer.op for layer in self.layers]


# ---------------------------------------------------------------------------
# torch.fx -> Graph


def unsupported(path: str, what: str) -> ExportError:
    """The error for a torch op outside the NPU-native set."""
    return ExportError(f"{path}: {what} is not an NPU-native op; allowed: {ALLOWED_TORCH_OPS}")


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _conv_padding(m: nn.Conv2d) -> int | None:
    """Per-side padding of a 3x3 conv, or None when it is not 0 or 1 on both axes."""
    if m.padding == "same":
        return 1
    if m.padding == "valid":
        return 0
    pad = _pair(m.padding)
    return pad[0] if pad[0] == pad[1] and pad[0] in (0, 1) else None


def _conv_problems(m: nn.Conv2d) -> list[str]:
    """The fields of a Conv2d that the exporter cannot write."""
    checks = [
        (_pair(m.kernel_size) == (3, 3), f"kernel_size={tuple(_pair(m.kernel_size))}"),
        (_pair(m.stride) in ((1, 1), (2, 2)), f"stride={tuple(_pair(m.stride))}"),
        (_conv_padding(m) is not None, f"padding={m.padding}"),
        (m.groups == 1, f"groups={m.groups}"),
        (_pair(m.dilation) == (1, 1), f"dilation={tuple(_pair(m.dilation))}"),
        (m.padding_mode == "zeros", f"padding_mode='{m.padding_mode}'"),
    ]
    return [text for ok, text in checks if not ok]


def _node_path(node: torch.fx.Node) -> str:
    """Module path of a node, e.g. 'decoder.0.upsample' or 'encoder.0.0.add'."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack), "") if stack else ""
    return f"{owner}.{node.name}" if owner else node.name


def _arg(node: torch.fx.Node, index: int, name: str, default: Any = None) -> Any:
    """Positional-or-keyword argument of a call node."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


class _Lowering:
    """Walks an fx graph and appends `Layer`s, tracking NHWC shapes."""

    def __init__(self, module: nn.Module, input_shape: Sequence[int]) -> None:
        self.modules = dict(module.named_modules())
        self.input_shape = tuple(int(v) for v in input_shape)
        self.layers: list[Layer] = []
        self.shapes: dict[str, Shape] = {}
        self.values: dict[torch.fx.Node, str] = {}
        self.inputs: list[str] = []
        self.output = ""

    # -- helpers ---------------------------------------------------------
    def tensor(self, arg: Any, path: str) -> str:
        if not isinstance(arg, torch.fx.Node):
            raise unsupported(path, f"an operation on the constant {arg!r}")
        return self.values[arg]

    def emit(self, layer: Layer, shape: Shape) -> str:
        self.layers.append(layer)
        self.shapes[layer.output] = shape
        return layer.output

    # -- node kinds ------------------------------------------------------
    def run(self, graph: torch.fx.Graph) -> Graph:
        for node in graph.nodes:
            handler = getattr(self, f"on_{node.op}", None)
            if handler is None:
                raise unsupported(_node_path(node), f"fx node '{node.op}' ({node.target})")
            handler(node)
        return Graph(self.layers, self.shapes, self.inputs, self.output)

    def on_placeholder(self, node: torch.fx.Node) -> None:
        if self.inputs:
            raise ExportError(f"{node.name}: only single-input models can be exported")
        if len(self.input_shape) != 4:
            raise ExportError(f"input_shape must be (N, C, H, W), got {self.input_shape}")
        n, c, h, w = self.input_shape
        self.values[node] = node.name
        self.shapes[node.name] = (n, h, w, c)
        self.inputs.append(node.name)

    def on_output(self, node: torch.fx.Node) -> None:
        if not isinstance(node.args[0], torch.fx.Node):
            raise ExportError(f"only single-tensor outputs can be exported, got {node.args[0]!r}")
        self.output = self.values[node.args[0]]

    def on_call_module(self, node: torch.fx.Node) -> None:
        path = _node_path(node)
        module = self.modules[str(node.target)]
        handler = _MODULE_HANDLERS.get(type(module))
        if handler is None:
            raise unsupported(path, type(module).__name__)
        self.values[node] = handler(self, node, path, module)

    def on_call_function(self, node: torch.fx.Node) -> None:
        handler = _FUNCTION_HANDLERS.get(node.target)  # type: ignore[arg-type]
        if handler is None:
            name = getattr(node.target, "__name__", str(node.target))
            raise unsupported(_node_path(node), f"function '{name}'")
        self.values[node] = handler(self, node, _node_path(node))

    def on_call_method(self, node: torch.fx.Node) -> None:
        handler = _METHOD_HANDLERS.get(str(node.target))
        if handler is None:
            raise unsupported(_node_path(node), f"Tensor.{node.target}")
        self.values[node] = handler(self, node, _node_path(node))

    # -- modules ---------------------------------------------------------
    def conv(self, node: torch.fx.Node, path: str, m: nn.Conv2d) -> str:
        problems = _conv_problems(m)
        if problems:
            raise unsupported(path, f"Conv2d({', '.join(problems)})")
        x = self.tensor(node.args[0], path)
        n, h, w, c = self.shapes[x]
        if c != m.in_channels:
            raise ExportError(f"{path}: expects {m.in_channels} input channels, gets {c}")
        stride, pad = _pair(m.stride)[0], _conv_padding(m) or 0
        padding = "SAME" if pad == 1 and stride == 1 else "VALID"
        if pad == 1 and stride > 1:
            x = self.emit(Layer("PAD", [x], f"{node.name}_pad", path, pad=1), (n, h + 2, w + 2, c))
            h, w = h + 2, w + 2
        if padding == "VALID":
            h, w = (h - 3) // stride + 1, (w - 3) // stride + 1
        layer = Layer("CONV_2D", [x], node.name, path, kernel=3, stride=stride, padding=padding, module=m)
        return self.emit(layer, (n, h, w, m.out_channels))

    def relu(self, node: torch.fx.Node, path: str, _m: nn.Module | None = None) -> str:
        x = self.tensor(node.args[0], path)
        return self.emit(Layer("RELU", [x], node.name, path), self.shapes[x])

    def identity(self, node: torch.fx.Node, path: str, _m: nn.Module) -> str:
        return self.tensor(node.args[0], path)

    def upsample(self, node: torch.fx.Node, path: str, m: nn.Upsample) -> str:
        scale = m.scale_factor
        scale = scale[0] if isinstance(scale, tuple) and len(set(scale)) == 1 else scale
        integer = isinstance(scale, (int, float)) and scale == int(scale) and scale >= 1
        if m.mode != "nearest" or m.size is not None or not integer:
            raise unsupported(path, f"Upsample(mode='{m.mode}', size={m.size}, scale_factor={m.scale_factor})")
        x = self.tensor(node.args[0], path)
        n, h, w, c = self.shapes[x]
        s = int(scale)
        return self.emit(Layer("RESIZE_NEAREST_NEIGHBOR", [x], node.name, path, stride=s), (n, h * s, w * s, c))

    def maxpool(self, node: torch.fx.Node, path: str, m: nn.MaxPool2d) -> str:
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        plain = _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not (m.ceil_mode or m.return_indices)
        if k[0] != k[1] or s != k or not plain:
            raise unsupported(path, f"MaxPool2d(kernel_size={m.kernel_size}, stride={m.stride}, padding={m.padding}, "
                              f"dilation={m.dilation}, ceil_mode={m.ceil_mode})")
        x = self.tensor(node.args[0], path)
        n, h, w, c = self.shapes[x]
        layer = Layer("MAX_POOL_2D", [x], node.name, path, kernel=k[0], stride=k[0])
        return self.emit(layer, (n, h // k[0], w // k[0], c))

    # -- functions -------------------------------------------------------
    def cat(self, node: torch.fx.Node, path: str) -> str:
        parts = [self.tensor(a, path) for a in _arg(node, 0, "tensors")]
        dim = _arg(node, 1, "dim", 0)
        if dim not in (1, -3):
            raise unsupported(path, f"torch.cat(dim={dim})")
        shapes = [self.shapes[p] for p in parts]
        if len({s[:3] for s in shapes}) != 1:
            raise ExportError(f"{path}: torch.cat inputs differ in size: {shapes}")
        n, h, w, _ = shapes[0]
        out = (n, h, w, sum(s[3] for s in shapes))
        return self.emit(Layer("CONCATENATION", parts, node.name, path), out)

    def add(self, node: torch.fx.Node, path: str) -> str:
        if node.kwargs.get("alpha", 1) != 1:
            raise unsupported(path, "torch.add with alpha")
        a, b = (self.tensor(arg, path) for arg in node.args[:2])
        if self.shapes[a] != self.shapes[b]:
            raise unsupported(path, f"a broadcasting add {self.shapes[a]} + {self.shapes[b]}")
        return self.emit(Layer("ADD", [a, b], node.name, path), self.shapes[a])

    def clamp(self, node: torch.fx.Node, path: str) -> str:
        bounds = (_arg(node, 1, "min"), _arg(node, 2, "max"))
        ops = _CLAMP_LOWERING.get(tuple(None if v is None else float(v) for v in bounds))  # type: ignore[arg-type]
        if ops is None:
            raise unsupported(path, f"clamp(min={bounds[0]}, max={bounds[1]})")
        x = self.tensor(node.args[0], path)
        for i, op in enumerate(ops):
            name = node.name if i == len(ops) - 1 else f"{node.name}_{op.lower()}"
            x = self.emit(Layer(op, [x], name, path), self.shapes[x])
        return x


_CLAMP_LOWERING: dict[tuple[float | None, float | None], tuple[str, ...]] = {
    (0.0, 1.0): ("RELU", "RELU_N1_TO_1"),
    (0.0, None): ("RELU",),
    (-1.0, 1.0): ("RELU_N1_TO_1",),
}

_MODULE_HANDLERS: dict[type, Callable[..., str]] = {
    nn.Conv2d: _Lowering.conv,
    nn.ReLU: _Lowering.relu,
    nn.Upsample: _Lowering.upsample,
    nn.MaxPool2d: _Lowering.maxpool,
    nn.Identity: _Lowering.identity,
}
_FUNCTION_HANDLERS: dict[Any, Callable[..., str]] = {
    torch.cat: _Lowering.cat, torch.concat: _Lowering.cat,
    operator.add: _Lowering.add, torch.add: _Lowering.add,
    torch.clamp: _Lowering.clamp, torch.clip: _Lowering.clamp,
    torch.relu: _Lowering.relu, F.relu: _Lowering.relu,
}
_METHOD_HANDLERS: dict[str, Callable[..., str]] = {
    "add": _Lowering.add, "clamp": _Lowering.clamp, "clip": _Lowering.clamp, "relu": _Lowering.relu,
}


def fuse_activations(graph: Graph) -> Graph:
    """Fold each RELU into the CONV_2D/ADD feeding it when the RELU is its only consumer."""
    consumers: dict[str, int] = {graph.output: 1}
    for layer in graph.layers:
        for name in layer.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    producers = {layer.output: layer for layer in graph.layers}
    kept: list[Layer] = []
    for layer in graph.layers:
        source = producers.get(layer.inputs[0])
        if (layer.op == "RELU" and source is not None and source.op in ("CONV_2D", "ADD")
                and source.activation == "NONE" and consumers[source.output] == 1):
            del graph.shapes[source.output]
            source.activation, source.output = "RELU", layer.output
            producers[layer.output] = source
            continue
        kept.append(layer)
    return Graph(kept, graph.shapes, graph.inputs, graph.output)


def lower(model: nn.Module, input_shape: Sequence[int] = (1, 3, 256, 256)) -> Graph:
    """Trace `model` with torch.fx and lower it to fused TFLite layers (no tensor is computed)."""
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is an export problem
        raise ExportError(f"{type(model).__name__} cannot be traced by torch.fx: {exc}") from None
    return fuse_activations(_Lowering(model, input_shape).run(traced.graph))


# ---------------------------------------------------------------------------
# Graph -> flatbuffer


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _conv_arrays(layer: Layer, in_c: int, out_c: int) -> tuple[np.ndarray, np.ndarray]:
    """OHWI weights and bias of a CONV_2D layer (seeded random when it has no module)."""
    if layer.module is None:
        rng = np.random.default_rng(out_c * 1000 + in_c)
        scale = 1.0 / np.sqrt(layer.kernel * layer.kernel * in_c)
        weight = rng.uniform(-scale, scale, (out_c, layer.kernel, layer.kernel, in_c)).astype(np.float32)
        return weight, np.zeros(out_c, np.float32)
    conv = layer.module
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
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

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
        return [flat.tensor(f"{layer.output}/weight", weight.shape, weight),
                flat.tensor(f"{layer.output}/bias", bias.shape, bias)]
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


def export_tflite(model: nn.Module, path: str | Path,
                  input_shape: tuple[int, int, int, int] = (1, 3, 256, 256)) -> Path:
    """Write `model` as a float32 NHWC .tflite file made of NATIVE_OPS only; returns the path."""
    graph = lower(model, input_shape)
    return write_atomic(to_flatbuffer(graph, f"nnsearch {type(model).__name__}"), path)


# ---------------------------------------------------------------------------
# reading and running


def _op_name_table() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def read_op_names(path: str | Path) -> list[str]:
    """Operator names of every subgraph of a .tflite file, in order (custom ops as 'CUSTOM:name')."""
    schema = _schema()
    try:
        buf = Path(path).read_bytes()
        model = schema.Model.GetRootAs(buf, 0)
        names = _op_name_table()
        result = []
        for s in range(model.SubgraphsLength()):
            sub = model.Subgraphs(s)
            for i in range(sub.OperatorsLength()):
                code = model.OperatorCodes(sub.Operators(i).OpcodeIndex())
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                custom = code.CustomCode()
                result.append(f"CUSTOM:{custom.decode()}" if custom else names.get(builtin, f"UNKNOWN_{builtin}"))
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises anything
        raise ExportError(f"{path} is not a valid .tflite file: {exc}") from None
    return result


def check_native_ops(path: str | Path) -> list[str]:
    """The op names of a .tflite file; ExportError if any is outside NATIVE_OPS."""
    names = read_op_names(path)
    foreign = sorted(set(names) - NATIVE_OPS)
    if foreign:
        raise ExportError(f"{path} holds op(s) {foreign} outside the NPU-native set {sorted(NATIVE_OPS)}")
    return names


def make_interpreter(path: str | Path, threads: int = 1) -> Any:
    """An allocated ai-edge-litert Interpreter for a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path), num_threads=int(threads))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"the TFLite interpreter cannot load {path}: {exc}") from None
    return interpreter


def run_tflite(path: str | Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a single-input model on an NCHW float32 array; returns NCHW."""
    interpreter = make_interpreter(path, threads)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    nhwc = np.ascontiguousarray(np.transpose(np.asarray(x, np.float32), (0, 2, 3, 1)))
    if tuple(nhwc.shape) != tuple(inp["shape"]):
        expected = tuple(int(v) for v in inp["shape"])
        nchw = (expected[0], expected[3], expected[1], expected[2])
        raise ExportError(f"{path} takes NHWC {expected}, i.e. NCHW {nchw}; got NCHW {tuple(x.shape)}")
    interpreter.set_tensor(inp["index"], nhwc)
    interpreter.invoke()
    return np.transpose(interpreter.get_tensor(out["index"]), (0, 3, 1, 2)).copy()


@lru_cache(maxsize=1)
def runtime_version() -> str:
    """The interpreter package and version, e.g. 'ai-edge-litert 2.3.0'."""
    return f"ai-edge-litert {metadata.version('ai-edge-litert')}"


#: Clocks `time_tflite` reads: per-thread CPU time of the calling thread, or wall time.
CLOCKS = ("auto", "thread-cpu", "wall")


@dataclass(frozen=True)
class Timing:
    """Latency of repeated `invoke()` calls of one model, in ms per call.

    `clock` says what was read: 'thread-cpu' (CPU time of the invoking thread,
    the default with one thread) or 'wall'. `min_ms` is the statistic
    `nnsearch.latency` compares (see its module docstring); `median_ms` and
    `max_ms` describe the spread.
    """

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    threads: int
    runtime: str
    runtime_version: str
    height: int = 0
    width: int = 0
    samples_ms: tuple[float, ...] = field(default=(), compare=False, repr=False)
    clock: str = "wall"


def resolve_clock(clock: str, threads: int) -> str:
    """The clock `time_tflite` reads: 'auto' is 'thread-cpu' with one thread, else 'wall'.

    With one thread XNNPACK and the builtin kernels run inside the invoking
    thread, so its CPU time is the invoke's latency minus the time the thread
    sat descheduled while other processes ran; on an idle machine both clocks
    agree (within 1% on one-op models here). With more threads the work runs
    in pool threads, so only wall time means latency.
    """
    if clock not in CLOCKS:
        raise ExportError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    if clock == "auto":
        return "thread-cpu" if threads == 1 else "wall"
    if clock == "thread-cpu" and threads != 1:
        raise ExportError(f"clock='thread-cpu' measures one thread's latency only, got threads={threads}")
    return clock


def _timer(clock: str) -> Callable[[], int]:
    return time.thread_time_ns if clock == "thread-cpu" else time.perf_counter_ns


def time_tflite(path: str | Path, *, runs: int = 5, warmup: int = 1, threads: int = 1, clock: str = "auto",
                min_total_ms: float = 0.0, max_runs: int = 200) -> Timing:
    """Time a .tflite file on random inputs of the shapes it declares.

    After `warmup` untimed calls, `runs` calls are timed; with `min_total_ms`
    the timing goes on until the timed calls add up to that many ms (at most
    `max_runs` calls), so short models get more runs.
    """
    if runs < 1 or warmup < 0 or min_total_ms < 0:
        raise ExportError(f"runs must be >= 1, warmup >= 0 and min_total_ms >= 0, got runs={runs}, "
                          f"warmup={warmup}, min_total_ms={min_total_ms}")
    clock = resolve_clock(clock, threads)
    interpreter = make_interpreter(path, threads)
    rng = np.random.default_rng(0)
    details = interpreter.get_input_details()
    for d in details:
        interpreter.set_tensor(d["index"], rng.random(tuple(d["shape"]), dtype=np.float32))
    for _ in range(warmup):
        interpreter.invoke()
    now, samples = _timer(clock), []
    while len(samples) < runs or (sum(samples) < min_total_ms and len(samples) < max(runs, max_runs)):
        start = now()
        interpreter.invoke()
        samples.append((now() - start) / 1e6)
    shape = tuple(details[0]["shape"])
    return Timing(
        median_ms=statistics.median(samples), min_ms=min(samples), max_ms=max(samples), runs=len(samples),
        threads=threads, runtime=RUNTIME, runtime_version=runtime_version(),
        height=int(shape[1]) if len(shape) == 4 else 0, width=int(shape[2]) if len(shape) == 4 else 0,
        samples_ms=tuple(samples), clock=clock,
    )
