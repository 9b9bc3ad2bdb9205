"""Models in the NN Dataset contract: rebuild one from its code, and tell whether it is a search-space student.

A model file defines `supported_hyperparameters()` and `class Net(in_shape,
out_shape, prm, device)`. `build_net` runs such a file, with the user's opt-in
only (`nnsearch.common.trust`), in a fresh module namespace (nothing is
registered in `sys.modules`, nothing is imported by name from the store) and instantiates `Net` on the CPU with the contract's
arguments. `network_signature` describes a network by what it computes - its
modules' kinds and settings, parameter shapes and the wiring of the traced
torch.fx graph - and not by attribute names, so two files that build the same
network under different names get the same signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from nnsearch.common.trust import UntrustedCodeError, run_code
from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch
from nnsearch.model.student import build_student

#: Shape `Net` is built with for image-to-image tasks (batch, channels, height, width).
IMAGE_SHAPE = (1, 3, 256, 256)
#: Settings that define what a module computes (names and in-place flags do not).
_MODULE_SETTINGS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "scale_factor",
    "mode",
    "size",
    "align_corners",
    "ceil_mode",
    "negative_slope",
    "min_val",
    "max_val",
    "p",
    "dim",
    "eps",
    "momentum",
    "affine",
    "num_features",
)


class ModelCodeError(NNSearchError):
    """A model file cannot be run or its `Net` cannot be built."""


def build_net(
    code: str,
    name: str,
    in_shape: Sequence[int] = IMAGE_SHAPE,
    out_shape: Sequence[int] | None = None,
    prm: Mapping[str, Any] | None = None,
    *,
    trusted: bool,
) -> nn.Module:
    """The file's `Net(in_shape, out_shape, prm, "cpu")` in eval mode; ModelCodeError naming `name` if that fails.

    `prm` gives hyperparameter values; every name `supported_hyperparameters()`
    declares that `prm` lacks gets 0.5, the middle of LEMUR's [0, 1] range.
    `trusted`: the user's opt-in to run the file (`nnsearch.common.trust`);
    UntrustedCodeError without it.
    """
    try:
        module = run_code(code, f"model {name}", trusted=trusted)
        declared = module.supported_hyperparameters() if hasattr(module, "supported_hyperparameters") else ()
        values = {**{str(n): 0.5 for n in declared}, **dict(prm or {})}
        net = module.Net(tuple(in_shape), tuple(out_shape or in_shape), values, "cpu")
    except UntrustedCodeError:
        raise
    except Exception as exc:  # the file is foreign code: any failure is the file's
        raise ModelCodeError(f"model {name!r}: its code does not build a Net: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ModelCodeError(f"model {name!r}: Net(...) returned {type(net).__name__}, not a torch module")
    return net.cpu().eval()


def network_signature(model: nn.Module) -> str:
    """sha256 of what `model` computes: traced graph wiring, module kinds and settings, parameter shapes."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:
        raise ModelCodeError(
            f"cannot trace {type(model).__name__} with torch.fx: {type(exc).__name__}: {exc}"
        ) from None
    modules = dict(model.named_modules())
    signature: dict[fx.Node, str] = {}
    inputs = 0
    for node in graph.nodes:
        if node.op == "placeholder":
            label = f"input{inputs}"
            inputs += 1
        elif node.op == "call_module":
            label = _module_label(modules[node.target])
        elif node.op == "get_attr":
            label = f"attr{_tensor_shape(model, node.target)}"
        elif node.op == "call_function":
            label = f"fn:{getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', node.target)}"
        else:  # call_method, output
            label = f"{node.op}:{node.target if node.op == 'call_method' else ''}"
        arguments = _arguments(node.args, signature) + _arguments(sorted(node.kwargs.items()), signature)
        signature[node] = _digest(f"{label}({arguments})")
    output = next(node for node in reversed(graph.nodes) if node.op == "output")
    shapes = sorted(str(tuple(p.shape)) for p in model.parameters())
    return _digest(signature[output] + "|" + ",".join(shapes))


def matching_arch(model: nn.Module, candidates: Iterable[Arch]) -> Arch | None:
    """The first candidate architecture whose student computes what `model` computes, or None."""
    params = sum(p.numel() for p in model.parameters())
    wanted: str | None = None
    for arch in candidates:
        student = build_student(arch)
        if sum(p.numel() for p in student.parameters()) != params:
            continue  # cheap filter before tracing
        wanted = wanted or network_signature(model)
        if network_signature(student) == wanted:
            return arch
    return None


def _module_label(module: nn.Module) -> str:
    settings = {k: getattr(module, k) for k in _MODULE_SETTINGS if hasattr(module, k)}
    own = sorted((n, tuple(p.shape)) for n, p in module.named_parameters(recurse=False))
    return f"{type(module).__name__}{sorted(settings.items())}{[shape for _, shape in own]}"


def _tensor_shape(model: nn.Module, target: str) -> tuple[int, ...]:
    value: Any = model
    for part in target.split("."):
        value = getattr(value, part)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def _arguments(args: Any, signature: Mapping[fx.Node, str]) -> str:
    """Argument text with every graph node replaced by its signature (order kept: cat([a, b]) != cat([b, a]))."""
    if isinstance(args, fx.Node):
        return signature[args]
    if isinstance(args, (list, tuple)):
        return "[" + ",".join(_arguments(a, signature) for a in args) + "]"
    if isinstance(args, dict):
        return "{" + ",".join(f"{k}:{_arguments(v, signature)}" for k, v in sorted(args.items())) + "}"
    return repr(args)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
