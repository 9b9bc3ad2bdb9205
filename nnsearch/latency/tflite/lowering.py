"""torch.fx -> `Graph`: lowering a student to the NPU-native TFLite op set, with analytic NHWC shapes."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from nnsearch.errors import ExportError
from nnsearch.latency.tflite.graph import ALLOWED_TORCH_OPS, Graph, Layer, Shape


def unsupported(path: str, what: str) -> ExportError:
    """The error for a torch op outside the NPU-native set."""
    return ExportError(f"{path}: {what} is not an NPU-native op; allowed: {ALLOWED_TORCH_OPS}")


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


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
        handler = _FUNCTION_HANDLERS.get(node.target)
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
        assert isinstance(scale, (int, float))
        x = self.tensor(node.args[0], path)
        n, h, w, c = self.shapes[x]
        s = int(scale)
        return self.emit(Layer("RESIZE_NEAREST_NEIGHBOR", [x], node.name, path, stride=s), (n, h * s, w * s, c))

    def maxpool(self, node: torch.fx.Node, path: str, m: nn.MaxPool2d) -> str:
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        plain = _pair(m.padding) == (0, 0) and _pair(m.dilation) == (1, 1) and not (m.ceil_mode or m.return_indices)
        if k[0] != k[1] or s != k or not plain:
            raise unsupported(
                path,
                f"MaxPool2d(kernel_size={m.kernel_size}, stride={m.stride}, padding={m.padding}, "
                f"dilation={m.dilation}, ceil_mode={m.ceil_mode})",
            )
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
    torch.cat: _Lowering.cat,
    torch.concat: _Lowering.cat,
    operator.add: _Lowering.add,
    torch.add: _Lowering.add,
    torch.clamp: _Lowering.clamp,
    torch.clip: _Lowering.clamp,
    torch.relu: _Lowering.relu,
    F.relu: _Lowering.relu,
}
_METHOD_HANDLERS: dict[str, Callable[..., str]] = {
    "add": _Lowering.add,
    "clamp": _Lowering.clamp,
    "clip": _Lowering.clamp,
    "relu": _Lowering.relu,
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
        if (
            layer.op == "RELU"
            and source is not None
            and source.op in ("CONV_2D", "ADD")
            and source.activation == "NONE"
            and consumers[source.output] == 1
        ):
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
