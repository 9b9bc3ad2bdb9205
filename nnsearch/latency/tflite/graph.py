"""The lowered graph the TFLite writer and the lookup table share: layers, NHWC shapes, the native op set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

NATIVE_OPS: frozenset[str] = frozenset(
    {
        "CONV_2D",
        "RESIZE_NEAREST_NEIGHBOR",
        "CONCATENATION",
        "ADD",
        "MAX_POOL_2D",
        "PAD",
        "RELU",
        "RELU_N1_TO_1",
    }
)

#: The torch operations the exporter accepts, as named in error messages.
ALLOWED_TORCH_OPS = (
    "Conv2d 3x3 (stride 1 or 2, padding 0/1, groups 1, dilation 1), ReLU, "
    "Upsample(mode='nearest', integer scale), MaxPool2d (kernel = stride, no padding), "
    "Identity, torch.cat(dim=1), tensor + tensor, torch.clamp(x, 0, 1), torch.relu"
)

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


def schema() -> Any:
    """The TFLite flatbuffer schema classes that ai-edge-litert ships."""
    from ai_edge_litert import schema_py_generated as schema

    return schema
