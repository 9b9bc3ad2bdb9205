"""Lookup-table keys and one-op probe models.

A student at a given input resolution is decomposed into the TFLite operators
`nnsearch.latency.tflite.lower` emits; each operator becomes an `OpKey`:

- `op`: the TFLite builtin (CONV_2D, PAD, ADD, ...);
- `in_h, in_w, in_c`: NHWC size of its first input;
- `out_c`: output channels (CONCATENATION's second input has out_c - in_c);
- `kernel`: conv / pool window, the per-side padding for PAD, else 0;
- `stride`: conv / pool stride, the scale factor for RESIZE_NEAREST_NEIGHBOR,
  else 1;
- `activation`: the fused activation (NONE or RELU).

A PAD that only feeds a CONV_2D is folded into that conv's key: XNNPACK fuses
such a PAD into the convolution (timed alone it cost 2.5 ms at 272x480x16,
inside PAD + conv nothing), so a strided CONV_2D key means torch's conv3x3
with padding 1, keyed by its unpadded input. `probe_graph(key)` rebuilds the
layer alone as the exporter writes it (stride 1: SAME conv; stride > 1: PAD +
VALID conv), so timing the probe times that layer. `space_keys` lists every key a search space can need
at a resolution and `export_probes` writes the probes plus a CSV manifest for
measurement on another device (e.g. TFLite's benchmark_model on a phone).
"""

from __future__ import annotations

import csv
import itertools
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch

from nnsearch.common.precision import Precision
from nnsearch.errors import LatencyError
from nnsearch.latency.quantize import quantize_with_random_calibration
from nnsearch.latency.tflite import Graph, Layer, lower, to_flatbuffer, write_atomic
from nnsearch.model.arch import Arch
from nnsearch.model.space import SearchSpace
from nnsearch.model.student import build_student


class OpKey(NamedTuple):
    """One operator instance of a lowered student (see the module docstring)."""

    op: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    activation: str


KEY_COLUMNS: tuple[str, ...] = OpKey._fields
MANIFEST_COLUMNS: tuple[str, ...] = KEY_COLUMNS + ("precision", "file")
ArchKeys = tuple[tuple[OpKey, int], ...]  # (key, how many instances)


def folded_pads(graph: Graph) -> dict[str, str]:
    """Outputs of 1-pixel PADs whose only consumer is a CONV_2D, mapped to the PAD's input."""
    uses = Counter(name for layer in graph.layers for name in layer.inputs)
    uses[graph.output] += 1
    conv_inputs = {layer.inputs[0] for layer in graph.layers if layer.op == "CONV_2D"}
    return {
        layer.output: layer.inputs[0]
        for layer in graph.layers
        if layer.op == "PAD" and layer.pad == 1 and uses[layer.output] == 1 and layer.output in conv_inputs
    }


def layer_key(layer: Layer, graph: Graph, pads: dict[str, str] | None = None) -> OpKey:
    """The lookup-table key of one lowered layer (`pads`: `folded_pads(graph)`)."""
    source = layer.inputs[0]
    if layer.op == "CONV_2D" and pads:
        source = pads.get(source, source)
    _, h, w, c = graph.shapes[source]
    kernel = layer.pad if layer.op == "PAD" else layer.kernel
    return OpKey(layer.op, h, w, c, graph.shapes[layer.output][3], kernel, layer.stride, layer.activation)


def graph_keys(graph: Graph) -> ArchKeys:
    """Distinct keys of a lowered graph with their instance counts, sorted (folded PADs dropped)."""
    pads = folded_pads(graph)
    keys = (layer_key(layer, graph, pads) for layer in graph.layers if layer.output not in pads)
    return tuple(sorted(Counter(keys).items()))


def check_resolution(divisor: int, height: int, width: int, what: str) -> None:
    """LatencyError unless height and width are positive multiples of `divisor`."""
    if height <= 0 or width <= 0 or height % divisor or width % divisor:
        raise LatencyError(f"{what} needs height and width that are multiples of {divisor}, got {height}x{width}")


@lru_cache(maxsize=8192)
def arch_keys(arch: Arch, height: int, width: int) -> ArchKeys:
    """Key decomposition of a student at an input resolution (cached per Arch and size).

    The student is built on the meta device, so nothing is allocated or run.
    """
    check_resolution(arch.min_divisor, height, width, arch.describe())
    with torch.device("meta"):
        model = build_student(arch)
    return graph_keys(lower(model, (1, arch.in_channels, height, width)))


def _level_arches(space: SearchSpace, level: int) -> Iterator[Arch]:
    """Two-level students whose ops, at level `level`'s resolution, cover what the space puts there.

    Every (width_i, width_i+1) pair is combined with every skip, downsample,
    block type and global-residual choice; those choices touch disjoint ops
    (fuse conv, down path, stages, head), so they are cycled together rather
    than crossed, which keeps the count small.
    """
    positive = [min((b for b in space.blocks[i] if b > 0), default=0) for i in (level, level + 1)]
    options = [space.skip[level], space.downsample, space.block, space.global_residual]
    cycle = max(len(o) for o in options)
    for w_a, w_b in itertools.product(space.widths[level], space.widths[level + 1]):
        for j in range(cycle):
            skip, down, block = (o[j % len(o)] for o in (space.skip[level], space.downsample, space.block))
            gres = space.global_residual[j % len(space.global_residual)]
            yield Arch((w_a, w_b), tuple(positive), (skip,), block, down, gres)


def _single_level_arches(space: SearchSpace) -> Iterator[Arch]:
    positive = min((b for b in space.blocks[0] if b > 0), default=0)
    for w, block, gres in itertools.product(space.widths[0], space.block, space.global_residual):
        yield Arch((w,), (positive,), (), block, "conv", gres)


def space_keys(space: SearchSpace, height: int, width: int) -> list[OpKey]:
    """Every key a student of `space` can need at this input resolution, sorted.

    Built from small two-level students lowered at each level's resolution, so
    it may hold a few stem/head keys that only level 0 really uses.
    """
    check_resolution(2 ** (space.max_levels - 1), height, width, f"search space '{space.name}'")
    keys: set[OpKey] = set()
    pairs = [(0, arch) for arch in _single_level_arches(space)] if 1 in space.levels else []
    pairs += [(i, arch) for i in range(space.max_levels - 1) for arch in _level_arches(space, i)]
    for level, arch in pairs:
        keys.update(key for key, _ in arch_keys(arch, height >> level, width >> level))
    return sorted(keys)


def _probe_output(key: OpKey) -> tuple[int, int]:
    """Output height and width of a probe operator."""
    h, w = key.in_h, key.in_w
    if key.op == "PAD":
        return h + 2 * key.kernel, w + 2 * key.kernel
    if key.op == "RESIZE_NEAREST_NEIGHBOR":
        return h * key.stride, w * key.stride
    if key.op == "CONV_2D" and key.stride > 1:
        h, w = h + 2, w + 2
    if key.op in ("MAX_POOL_2D", "CONV_2D") and key.stride > 1:
        return (h - key.kernel) // key.stride + 1, (w - key.kernel) // key.stride + 1
    return h, w


def probe_graph(key: OpKey) -> Graph:
    """The graph that times `key`: one operator, or PAD + VALID conv for a strided CONV_2D."""
    shapes = {"x": (1, key.in_h, key.in_w, key.in_c)}
    if key.op in ("ADD", "CONCATENATION"):
        second = key.out_c - key.in_c if key.op == "CONCATENATION" else key.in_c
        shapes["x2"] = (1, key.in_h, key.in_w, second)
    inputs, layers = list(shapes), []
    if key.op == "CONV_2D" and key.stride > 1:
        layers.append(Layer("PAD", ["x"], "x_pad", pad=1))
        shapes["x_pad"] = (1, key.in_h + 2, key.in_w + 2, key.in_c)
    layers.append(
        Layer(
            key.op,
            [layers[0].output] if layers else inputs,
            "y",
            activation=key.activation,
            stride=key.stride,
            kernel=0 if key.op == "PAD" else key.kernel,
            pad=key.kernel if key.op == "PAD" else 0,
            padding="SAME" if key.op == "CONV_2D" and key.stride == 1 else "VALID",
        )
    )
    shapes["y"] = (1, *_probe_output(key), key.out_c)
    return Graph(layers, shapes, inputs, "y")


def probe_file_name(key: OpKey, precision: str = Precision.FP32) -> str:
    """A readable, unique file name for a key's probe (precisions other than fp32 add a suffix)."""
    return Precision.parse(precision).tflite_name(
        f"{key.op.lower()}_{key.in_h}x{key.in_w}x{key.in_c}-{key.out_c}"
        f"_k{key.kernel}s{key.stride}_{key.activation.lower()}"
    )


#: Probes are calibrated at most this large (the same op with the same tensor names; values do not matter).
_CALIBRATION_SIDE = 32


def write_probe(key: OpKey, folder: str | Path, precision: str = Precision.FP32) -> Path:
    """Write the probe .tflite for `key` into `folder`; returns its path.

    A probe in another precision than fp32 is the float probe quantized the way
    students are (`nnsearch.latency.quantize`, calibrated on seeded [0, 1) inputs).
    """
    precision = Precision.parse(precision)
    target = Path(folder) / probe_file_name(key, precision)
    data = to_flatbuffer(probe_graph(key), f"nnsearch probe {probe_file_name(key)}")
    if not precision.quantized:
        return write_atomic(data, target)
    small = key._replace(in_h=min(key.in_h, _CALIBRATION_SIDE), in_w=min(key.in_w, _CALIBRATION_SIDE))
    with tempfile.TemporaryDirectory(prefix="nnsearch-probe-") as scratch:
        source = write_atomic(data, Path(scratch) / probe_file_name(key))
        calibration = write_atomic(to_flatbuffer(probe_graph(small)), Path(scratch) / f"small-{source.name}")
        return quantize_with_random_calibration(source, target, precision, f"probe {probe_file_name(key)}", calibration)


def export_probes(
    space: SearchSpace,
    resolution: tuple[int, int],
    out_dir: str | Path,
    keys: Iterable[OpKey] | None = None,
    precision: str = Precision.FP32,
) -> Path:
    """Write the probes a space needs at (height, width) in `precision` and `manifest.csv`; returns its path."""
    out = Path(out_dir)
    height, width = resolution
    chosen = sorted(set(keys)) if keys is not None else space_keys(space, height, width)
    rows = [{**key._asdict(), "precision": precision, "file": write_probe(key, out, precision).name} for key in chosen]
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def key_from_row(row: dict[str, str]) -> OpKey:
    """Parse the key columns of one CSV row (ValueError/KeyError on bad values)."""
    ints = {name: int(row[name]) for name in KEY_COLUMNS if name not in ("op", "activation")}
    return OpKey(op=row["op"].strip().upper(), activation=row["activation"].strip().upper(), **ints)
