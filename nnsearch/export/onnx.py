"""Torch -> ONNX (the TorchScript exporter, no onnxscript needed) and running it in onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnsearch.errors import ExportError

INPUT_NAME, OUTPUT_NAME = "noisy", "denoised"
OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, int, int, int]) -> Path:
    """Write `model` as NCHW float32 ONNX with dynamic height/width; checked by onnx.checker."""
    import onnx

    path = Path(path)
    dynamic = {2: "height", 3: "width"}
    try:
        with warnings.catch_warnings():  # the legacy exporter warns that dynamo is the new default
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (torch.zeros(input_shape),),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=OPSET,
                dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            )
        onnx.checker.check_model(str(path), full_check=True)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as exc:
        raise ExportError(f"ONNX export of {type(model).__name__} to {path} failed: {exc}") from None
    return path


def onnx_op_types(path: str | Path) -> list[str]:
    """The distinct op types of an ONNX file's graph, sorted."""
    import onnx

    return sorted({node.op_type for node in onnx.load(str(path)).graph.node})


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model on an NCHW float32 array with onnxruntime's CPU provider."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise ExportError("verifying the ONNX file needs onnxruntime: pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: np.asarray(x, np.float32)})[0]
