"""Torch -> TFLite writer for the NPU-native op set, and interpreter helpers.

Modules: `graph` (the lowered `Graph`), `lowering` (torch.fx -> Graph),
`flatbuffer` (Graph -> .tflite), `interpreter` (read, check, run), `timing`.

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

from nnsearch.latency.tflite.flatbuffer import (
    export_tflite,
    to_flatbuffer,
    write_atomic,
)
from nnsearch.latency.tflite.graph import (
    ALLOWED_TORCH_OPS,
    NATIVE_OPS,
    Graph,
    Layer,
    Shape,
)
from nnsearch.latency.tflite.interpreter import (
    check_native_ops,
    load_delegate,
    make_interpreter,
    read_op_names,
    run_tflite,
    runtime_version,
)
from nnsearch.latency.tflite.lowering import fuse_activations, lower, unsupported
from nnsearch.latency.tflite.timing import (
    CLOCKS,
    RUNTIME,
    Timing,
    resolve_clock,
    time_tflite,
)

__all__ = [
    "ALLOWED_TORCH_OPS",
    "CLOCKS",
    "NATIVE_OPS",
    "RUNTIME",
    "Graph",
    "Layer",
    "Shape",
    "Timing",
    "check_native_ops",
    "export_tflite",
    "fuse_activations",
    "load_delegate",
    "lower",
    "make_interpreter",
    "read_op_names",
    "resolve_clock",
    "run_tflite",
    "runtime_version",
    "time_tflite",
    "to_flatbuffer",
    "unsupported",
    "write_atomic",
]
