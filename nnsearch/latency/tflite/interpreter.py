"""Reading .tflite files (op names, the native-op check) and running them in ai-edge-litert's Interpreter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.errors import ExportError
from nnsearch.latency.tflite.graph import NATIVE_OPS
from nnsearch.latency.tflite.graph import schema as _schema


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


def make_interpreter(path: str | Path, threads: int = 1, delegates: Sequence[Any] = ()) -> Any:
    """An allocated ai-edge-litert Interpreter for a .tflite file (with external `delegates`, see `load_delegate`)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(
            model_path=str(path), num_threads=int(threads), experimental_delegates=list(delegates) or None
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ExportError(f"the TFLite interpreter cannot load {path}: {exc}") from None
    return interpreter


def load_delegate(library: str | Path, options: Mapping[str, str] | None = None) -> Any:
    """An external TFLite delegate library (how NPU boards expose their NPU), with its string options.

    ExportError with the runtime's message when the library cannot be loaded.
    """
    from ai_edge_litert.interpreter import load_delegate as _load

    try:
        return _load(str(library), {str(k): str(v) for k, v in (options or {}).items()})
    except (ValueError, RuntimeError, OSError) as exc:
        raise ExportError(f"cannot load the TFLite delegate {library}: {exc}") from None


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
