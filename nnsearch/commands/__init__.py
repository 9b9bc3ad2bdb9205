"""Sub-commands of the `nnsearch` CLI, one module per area.

Each module defines `register(subparsers)`, which adds its sub-commands and sets
`handler` (a function of the parsed arguments returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib

from nnsearch.errors import NNSearchError

#: Modules (in nnsearch.commands) whose sub-commands the CLI offers, in help order.
COMMAND_MODULES = ("study", "store", "lut", "select", "evaluate", "teacher", "replay")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"nnsearch.commands.{name}").register(subparsers)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--db` option."""
    parser.add_argument("--db", default=None,
                        help="database URL or SQLite file (default: $NNSEARCH_DB, else db/nnsearch.db)")


def add_teacher_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--teacher` option: a preset name or a teacher file."""
    parser.add_argument("--teacher", default="cpu", metavar="PRESET|PATH",
                        help="teacher: a preset (cpu, the default, or paper) or a file: TorchScript, a torch.export "
                             "program (.pt2) or a Python file with build_teacher() and STATE_DICT")


def parse_resolution(text: str) -> tuple[int, int]:
    """'1088x1920' -> (1088, 1920), with a clear error otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NNSearchError(f"resolution must look like HEIGHTxWIDTH (e.g. 1088x1920), got {text!r}") from None
    if height <= 0 or width <= 0:
        raise NNSearchError(f"resolution must be positive, got {text!r}")
    return height, width
