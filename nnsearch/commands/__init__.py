"""Sub-commands of the `nnsearch` CLI, one module per area.

Each module defines `register(subparsers)`, which adds its sub-commands and sets
`handler` (a function of the parsed arguments returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib

from nnsearch.common.precision import NAMES, Precision
from nnsearch.errors import NNSearchError

#: Modules (in nnsearch.commands) whose sub-commands the CLI offers, in help order.
COMMAND_MODULES = ("study", "store", "lut", "agent", "select", "evaluate", "teacher", "train", "replay")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"nnsearch.commands.{name}").register(subparsers)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--db` option."""
    parser.add_argument("--db", default=None,
                        help="database URL or SQLite file (default: $NNSEARCH_DB, else db/nnsearch.db)")


def add_trust_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The shared `--trust-code` opt-in: run model code that came from elsewhere (`nnsearch.common.trust`)."""
    parser.add_argument("--trust-code", action="store_true",
                        help=f"run model code from elsewhere (an NN Dataset folder, an imported model) to {what}; "
                             "without it such code is never run (also: NNSEARCH_TRUST_CODE=1)")


def add_teacher_option(parser: argparse.ArgumentParser, default: object = "cpu") -> None:
    """The shared `--teacher` option: a preset name or a teacher file."""
    parser.add_argument("--teacher", default=default, metavar="PRESET|PATH",
                        help="teacher: a preset (cpu or paper; default %(default)s) or a file: TorchScript, a "
                             "torch.export program (.pt2) or a Python file with build_teacher() and STATE_DICT")


def max_side(text: str) -> int:
    """The `--max-side` value: an integer of at least 11 px (SSIM's window), else an argparse error (exit 2)."""
    minimum = 11  # nnsearch.train.datasets.images.MIN_SIDE (not imported here, to keep --help light)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of pixels, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"images are scored with {minimum}x{minimum} SSIM windows, so it must be "
                                         f">= {minimum}, got {value}")
    return value


def parse_resolution(text: str) -> tuple[int, int]:
    """'1088x1920' -> (1088, 1920), with a clear error otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NNSearchError(f"resolution must look like HEIGHTxWIDTH (e.g. 1088x1920), got {text!r}") from None
    if height <= 0 or width <= 0:
        raise NNSearchError(f"resolution must be positive, got {text!r}")
    return height, width


def add_precision_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The shared `--precision` option (checked by `parse_precision` in the handler: one-line error, exit 2)."""
    parser.add_argument("--precision", default=Precision.FP32.value, metavar="P",
                        help=f"{what}: one of {', '.join(NAMES)} (default %(default)s; int8 = static_wi8_ai8, "
                             "w8a16 = static_wi8_ai16, fp16 = float16 weights)")


def parse_precision(text: str) -> Precision:
    """The precision `text` names, else NNSearchError (the CLI prints one line and exits 2)."""
    return Precision.parse(text)
